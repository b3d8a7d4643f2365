package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/popbox/popbox/store"
)

// fakeStore answers with fixed errors after a fixed delay, recording what
// it was asked.
type fakeStore struct {
	store.Admin // nil: the administrative calls are not used here
	delay       time.Duration
	openErr     error
	deliverErr  error
	msgErr      error
	commitErr   error
	delivered   []string
	committed   [][]int
}

func (f *fakeStore) Open(_ context.Context, user string) (store.Maildrop, error) {
	time.Sleep(f.delay)
	if f.openErr != nil {
		return nil, f.openErr
	}
	return &fakeDrop{f}, nil
}

func (f *fakeStore) Deliver(_ context.Context, user string, r io.Reader) (store.MessageInfo, error) {
	time.Sleep(f.delay)
	b, _ := io.ReadAll(r)
	f.delivered = append(f.delivered, user+":"+string(b))
	return store.MessageInfo{UIDL: "u1", Size: int64(len(b))}, f.deliverErr
}

func (f *fakeStore) Usage(context.Context, string) (store.Usage, error) {
	return store.Usage{Messages: 7}, nil
}

type fakeDrop struct{ f *fakeStore }

func (d *fakeDrop) Messages() []store.MessageInfo { return []store.MessageInfo{{UIDL: "u1", Size: 5}} }
func (d *fakeDrop) Open(i int) (io.ReadCloser, error) {
	time.Sleep(d.f.delay)
	if d.f.msgErr != nil {
		return nil, d.f.msgErr
	}
	return io.NopCloser(strings.NewReader("hello")), nil
}
func (d *fakeDrop) Commit(deleted []int) error {
	time.Sleep(d.f.delay)
	d.f.committed = append(d.f.committed, deleted)
	return d.f.commitErr
}
func (d *fakeDrop) Close() error { return nil }

// histogramSum returns the sum of the observations of one operation.
func histogramSum(t *testing.T, m *Metrics, op string) float64 {
	t.Helper()
	mfs, err := m.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "popbox_store_operation_duration_seconds" {
			continue
		}
		for _, s := range mf.GetMetric() {
			if hasLabels(s, []string{"operation=" + op}) {
				return s.GetHistogram().GetSampleSum()
			}
		}
	}
	t.Fatalf("no histogram for %s", op)
	return 0
}

// TestStoreTimesCalls: each call is observed once, with at least the time
// the store took, and what the store returned comes through unchanged.
func TestStoreTimesCalls(t *testing.T) {
	const delay = 5 * time.Millisecond
	for _, wrap := range []struct {
		name string
		f    func(*Metrics, *fakeStore) store.Store
	}{
		{"Store", func(m *Metrics, f *fakeStore) store.Store { return m.Store(f) }},
		{"Admin", func(m *Metrics, f *fakeStore) store.Store { return m.Admin(f) }},
	} {
		t.Run(wrap.name, func(t *testing.T) {
			m := New()
			fk := &fakeStore{delay: delay}
			st := wrap.f(m, fk)
			ctx := context.Background()

			info, err := st.Deliver(ctx, "alice", strings.NewReader("msg"))
			if err != nil || info.UIDL != "u1" || info.Size != 3 || len(fk.delivered) != 1 || fk.delivered[0] != "alice:msg" {
				t.Fatalf("Deliver = %+v, %v; store saw %q", info, err, fk.delivered)
			}
			drop, err := st.Open(ctx, "alice")
			if err != nil {
				t.Fatal(err)
			}
			if msgs := drop.Messages(); len(msgs) != 1 || msgs[0].UIDL != "u1" {
				t.Errorf("Messages = %+v", msgs)
			}
			rc, err := drop.Open(0)
			if err != nil {
				t.Fatal(err)
			}
			if b, _ := io.ReadAll(rc); string(b) != "hello" {
				t.Errorf("message = %q", b)
			}
			rc.Close()
			if err := drop.Commit([]int{0}); err != nil || len(fk.committed) != 1 || fk.committed[0][0] != 0 {
				t.Errorf("Commit = %v, store saw %v", err, fk.committed)
			}
			drop.Close()

			for _, op := range opNames {
				if got := value(t, m, "popbox_store_operation_duration_seconds", "operation="+op); got != 1 {
					t.Errorf("%s observed %v times, want 1", op, got)
				}
				if sum := histogramSum(t, m, op); sum < delay.Seconds() || sum > 10 {
					t.Errorf("%s took %vs by the histogram, the store slept %v", op, sum, delay)
				}
				if got := value(t, m, "popbox_store_operation_errors_total", "operation="+op); got != 0 {
					t.Errorf("%s errors = %v, want 0", op, got)
				}
			}
		})
	}
}

// TestStoreErrorsPassThrough: errors keep their identity through the
// wrapper (callers test them with errors.Is), and only real failures
// count as errors.
func TestStoreErrorsPassThrough(t *testing.T) {
	m := New()
	disk := errors.New("disk on fire")
	f := &fakeStore{
		openErr:    fmt.Errorf("maildir: %w", store.ErrInUse),
		deliverErr: fmt.Errorf("maildir: %w", store.ErrQuota),
	}
	st := m.Admin(f)
	ctx := context.Background()
	if d, err := st.Open(ctx, "bob"); !errors.Is(err, store.ErrInUse) || d != nil {
		t.Errorf("Open = %v, %v; want nil, ErrInUse", d, err)
	}
	if _, err := st.Deliver(ctx, "bob", strings.NewReader("x")); !errors.Is(err, store.ErrQuota) {
		t.Errorf("Deliver = %v, want ErrQuota", err)
	}
	for _, op := range []string{"open", "deliver"} {
		if got := value(t, m, "popbox_store_operation_errors_total", "operation="+op); got != 0 {
			t.Errorf("%s: ErrInUse/ErrQuota counted as %v errors, want 0", op, got)
		}
		if got := value(t, m, "popbox_store_operation_duration_seconds", "operation="+op); got != 1 {
			t.Errorf("%s: %v observations, want 1 (failures are timed too)", op, got)
		}
	}

	f.openErr, f.deliverErr = nil, fmt.Errorf("deliver: %w", disk)
	f.msgErr, f.commitErr = fmt.Errorf("message: %w", fs.ErrNotExist), fmt.Errorf("commit: %w", disk)
	if _, err := st.Deliver(ctx, "bob", strings.NewReader("x")); !errors.Is(err, disk) {
		t.Errorf("Deliver = %v, want %v", err, disk)
	}
	d, err := st.Open(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Open(0); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("message Open = %v, want fs.ErrNotExist", err)
	}
	if err := d.Commit(nil); !errors.Is(err, disk) {
		t.Errorf("Commit = %v, want %v", err, disk)
	}
	for op, want := range map[string]float64{"open": 0, "deliver": 1, "message_open": 1, "commit": 1} {
		if got := value(t, m, "popbox_store_operation_errors_total", "operation="+op); got != want {
			t.Errorf("%s errors = %v, want %v", op, got, want)
		}
	}
	// The administrative calls pass through untimed.
	if u, err := st.Usage(ctx, "bob"); err != nil || u.Messages != 7 {
		t.Errorf("Usage = %+v, %v", u, err)
	}
}
