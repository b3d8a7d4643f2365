package metrics

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

func TestEndpoints(t *testing.T) {
	m := New()
	var failing atomic.Pointer[error]
	checks := 0
	s := m.NewServer(func(ctx context.Context) error {
		checks++
		if _, ok := ctx.Deadline(); !ok {
			t.Error("readiness check without a deadline")
		}
		if e := failing.Load(); e != nil {
			return *e
		}
		return nil
	}, nil)
	h := s.Handler()

	if code, body := get(t, h, "/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz = %d %q, want 200", code, body)
	}
	// Not ready until the listeners serve: the check is not even run.
	if code, _ := get(t, h, "/readyz"); code != 503 || checks != 0 {
		t.Errorf("/readyz before SetReady = %d (%d checks), want 503 and no check", code, checks)
	}
	s.SetReady(true)
	if code, body := get(t, h, "/readyz"); code != 200 || body != "ok\n" || checks != 1 {
		t.Errorf("/readyz when ready = %d %q (%d checks), want 200", code, body, checks)
	}
	down := errors.New("user database: gone")
	failing.Store(&down)
	if code, body := get(t, h, "/readyz"); code != 503 || !strings.Contains(body, "gone") {
		t.Errorf("/readyz with a failing check = %d %q, want 503 naming the failure", code, body)
	}
	failing.Store(nil)
	if code, _ := get(t, h, "/readyz"); code != 200 {
		t.Errorf("/readyz after recovery = %d, want 200", code)
	}
	s.SetReady(false)
	if code, _ := get(t, h, "/readyz"); code != 503 {
		t.Errorf("/readyz during shutdown = %d, want 503", code)
	}
	// Health is about the process, not its dependencies.
	if code, _ := get(t, h, "/healthz"); code != 200 {
		t.Errorf("/healthz during shutdown = %d, want 200", code)
	}

	m.POP3().Command("STAT", true)
	code, body := get(t, h, "/metrics")
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{
		`popbox_pop3_commands_total{command="STAT",result="ok"} 1`,
		"popbox_pop3_sessions 0",
		"go_goroutines ",
		"process_cpu_seconds_total ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if code, _ := get(t, h, "/nothing"); code != 404 {
		t.Errorf("/nothing = %d, want 404", code)
	}
}

// TestServeAndShutdown: the server answers on a real listener, has its
// timeouts set, and Shutdown makes Serve return nil.
func TestServeAndShutdown(t *testing.T) {
	s := New().NewServer(nil, nil)
	if s.http.ReadHeaderTimeout <= 0 || s.http.ReadTimeout <= 0 || s.http.WriteTimeout <= 0 || s.http.IdleTimeout <= 0 {
		t.Errorf("timeouts not all set: %+v", s.http)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	s.SetReady(true)
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + l.Addr().String() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/readyz = %d, want 200", resp.StatusCode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after Shutdown = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after Shutdown")
	}
	if s.ready.Load() {
		t.Error("still ready after Shutdown")
	}
}
