package store

import (
	"context"
	"errors"
	"fmt"
)

// PurgeEach runs purge for every user, for a store's Admin.PurgeAll: it
// goes on past a user's error, stops when ctx ends, and returns the total
// and every error joined, each naming its user. what names the operation
// in the error for a cancelled ctx ("maildir: purge").
func PurgeEach(ctx context.Context, what string, users []string, purge func(ctx context.Context, user string) (int, error)) (int, error) {
	total := 0
	var errs []error
	for _, u := range users {
		if err := ctx.Err(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
			break
		}
		n, err := purge(ctx, u)
		total += n
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", u, err))
		}
	}
	return total, errors.Join(errs...)
}

// ExpireEach runs expire for every user, for a store's Admin.ExpireAll, as
// PurgeEach does; users whose mailbox is in use (ErrInUse) are returned in
// busy rather than as errors.
func ExpireEach(ctx context.Context, what string, users []string, expire func(ctx context.Context, user string) (int, error)) (n int, busy []string, err error) {
	var errs []error
	for _, u := range users {
		if err := ctx.Err(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
			break
		}
		k, err := expire(ctx, u)
		n += k
		switch {
		case errors.Is(err, ErrInUse):
			busy = append(busy, u)
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", u, err))
		}
	}
	return n, busy, errors.Join(errs...)
}
