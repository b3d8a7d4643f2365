package config

import (
	"strings"
	"testing"
)

// TestMetricsListen: [metrics] listen is off by default and must be
// host:port with a numeric port when set, reported with its line.
func TestMetricsListen(t *testing.T) {
	if got := Default().Metrics.Listen; got != "" {
		t.Errorf("default metrics.listen = %q, want \"\" (off)", got)
	}
	for _, ok := range []string{"127.0.0.1:9120", "[::1]:9120", "localhost:0", ":9120"} {
		cfg, err := Parse([]byte("[metrics]\nlisten = \""+ok+"\"\n"), "t.toml")
		if err != nil || cfg.Metrics.Listen != ok {
			t.Errorf("metrics.listen = %q: %v, %q", ok, err, cfg.Metrics.Listen)
		}
	}
	for _, bad := range []string{"9120", "127.0.0.1", "127.0.0.1:http", "127.0.0.1:70000"} {
		_, err := Parse([]byte("[metrics]\nlisten = \""+bad+"\"\n"), "t.toml")
		if err == nil || !strings.HasPrefix(err.Error(), "t.toml:2: metrics.listen: ") {
			t.Errorf("metrics.listen = %q: error %v, want one at t.toml:2 naming metrics.listen", bad, err)
		}
	}
}
