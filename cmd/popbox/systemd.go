package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/coreos/go-systemd/v22/daemon"
)

// Socket names popbox.socket gives its sockets (FileDescriptorName=), by
// which serve tells which protocol each passed socket is for.
const (
	socketPOP3  = "pop3"
	socketPOP3S = "pop3s"
	socketLMTP  = "lmtp"
)

// activatedListeners returns the listening sockets systemd passed (socket
// activation, sd_listen_fds(3)), by name; nil when none were passed. It
// unsets LISTEN_* so that no child process takes them for its own.
func activatedListeners() (map[string][]net.Listener, error) {
	files := activation.Files(true)
	if len(files) == 0 {
		return nil, nil
	}
	ls := map[string][]net.Listener{}
	var errs []error
	for _, f := range files {
		switch f.Name() {
		case socketPOP3, socketPOP3S, socketLMTP:
		default:
			errs = append(errs, fmt.Errorf("socket %q: name it %s, %s or %s with FileDescriptorName= in the .socket unit",
				f.Name(), socketPOP3, socketPOP3S, socketLMTP))
			f.Close()
			continue
		}
		l, err := net.FileListener(f)
		f.Close() // FileListener made its own descriptor
		if err != nil {
			errs = append(errs, fmt.Errorf("socket %q is not a listening stream socket: %w", f.Name(), err))
			continue
		}
		ls[f.Name()] = append(ls[f.Name()], l)
	}
	if err := errors.Join(errs...); err != nil {
		for _, group := range ls {
			for _, l := range group {
				l.Close()
			}
		}
		return nil, fmt.Errorf("socket activation: %w", err)
	}
	return ls, nil
}

// notifier tells the service manager about the server's state
// (sd_notify(3)): a no-op outside a Type=notify service, where
// NOTIFY_SOCKET is not set.
type notifier struct{ log *slog.Logger }

func (n notifier) notify(state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		n.log.Warn("sd_notify failed", "state", state, "err", err)
	}
}

func (n notifier) ready()    { n.notify(daemon.SdNotifyReady) }
func (n notifier) stopping() { n.notify(daemon.SdNotifyStopping) }

// reloading starts a reload; ready ends it. systemd 253 and later, with
// Type=notify-reload, want MONOTONIC_USEC to tell this reload from an
// earlier one.
func (n notifier) reloading() {
	n.notify(daemon.SdNotifyReloading + "\n" + daemon.SdNotifyMonotonicUsec())
}

// watchdog returns a ticker channel at half WATCHDOG_USEC (nil when the
// unit sets no WatchdogSec=) and its stop function. serve pings from the
// loop that also handles signals, so that a wedged main loop stops the
// pings and systemd restarts the service.
func (n notifier) watchdog() (<-chan time.Time, func()) {
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		n.log.Warn("ignoring the watchdog settings", "err", err)
	}
	if err != nil || d <= 0 {
		return nil, func() {}
	}
	t := time.NewTicker(d / 2)
	return t.C, t.Stop
}

func (n notifier) ping() { n.notify(daemon.SdNotifyWatchdog) }
