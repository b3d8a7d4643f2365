package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeConfigErrors: `popbox serve -c FILE` with a bad file exits 78
// (EX_CONFIG) before doing anything, and the message names the file, the
// line and the key.
func TestServeConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		file    string // "" for a file that does not exist
		args    []string
		wantErr string // FILE is replaced by the file's path
	}{
		{
			name:    "unknown key",
			file:    "# popbox\ncolour = \"blue\"\n",
			wantErr: "FILE:2: colour: unknown key",
		},
		{
			name:    "unknown key in a table",
			file:    "[pop3]\nlisten = \"127.0.0.1:0\"\nlisten_tsl = \"127.0.0.1:0\"\n",
			wantErr: "FILE:3: pop3.listen_tsl: unknown key",
		},
		{
			name:    "unknown table",
			file:    "data_dir = \"x\"\n\n[smtp]\nlisten = \"127.0.0.1:25\"\n",
			wantErr: "FILE:3: smtp: unknown key",
		},
		{
			name:    "string for an integer",
			file:    "[pop3]\nmax_line = \"255\"\n",
			wantErr: "FILE:2: pop3.max_line: expected an integer, found a string",
		},
		{
			name:    "integer for a duration",
			file:    "[pop3]\n\n\nshutdown_grace = 30\n",
			wantErr: "FILE:4: pop3.shutdown_grace: expected a duration string",
		},
		{
			name:    "integer for a string",
			file:    "data_dir = 5\n",
			wantErr: "FILE:1: data_dir: expected a string, found an integer",
		},
		{
			name:    "string for a table",
			file:    "\nlog = \"debug\"\n",
			wantErr: "FILE:2: log: expected a table, found a string",
		},
		{
			name:    "string for a boolean",
			file:    "[pop3]\nallow_short_idle_timeout = \"yes\"\n",
			wantErr: "FILE:2: pop3.allow_short_idle_timeout: expected true or false, found a string",
		},
		{
			name:    "invalid value",
			file:    "[log]\nformat = \"text\"\nlevel = \"loud\"\n",
			wantErr: "FILE:3: log.level: must be one of",
		},
		{
			name:    "TOML syntax error",
			file:    "[pop3]\nlisten = \n",
			wantErr: "FILE:2: invalid TOML",
		},
		{
			name:    "store URL that does not parse",
			file:    "# popbox\nstore = \"postgres://popbox:Hush-7@db:port/popbox\"\n",
			wantErr: "FILE:2: store: postgres://xxxxx@db:port/popbox is not a usable PostgreSQL URL: invalid port",
		},
		{
			name:    "missing file",
			wantErr: "FILE: no such file or directory",
		},
		{
			name:    "no listener",
			file:    "",
			args:    []string{"--listen", "", "--listen-tls", ""},
			wantErr: "pop3.listen: pop3.listen and pop3.listen_tls are both empty",
		},
		{
			name:    "bad listen flag",
			file:    "",
			args:    []string{"--listen", "localhost"},
			wantErr: `pop3.listen: "localhost" is not host:port`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			file := filepath.Join(dir, "popbox.toml")
			if tt.name != "missing file" {
				writeFile(t, file, tt.file)
			}
			data := filepath.Join(dir, "data")
			args := append([]string{"serve", "-c", file, "--data", data, "--listen", "127.0.0.1:0", "--listen-tls", "127.0.0.1:0"}, tt.args...)
			// A configuration wrongly accepted starts the server, which
			// runBin stops after cmdTimeout and reports.
			r := runBin(t, binOpts{}, args...)
			wantErr := strings.ReplaceAll(tt.wantErr, "FILE", file)
			if r.Code != exitConfig || r.Stdout != "" || !strings.HasPrefix(r.Stderr, "popbox: ") || !strings.Contains(r.Stderr, wantErr) {
				t.Errorf("popbox %s: exit %d, stdout %q, stderr %q; want exit %d, no output, and an error containing %q",
					strings.Join(args, " "), r.Code, r.Stdout, r.Stderr, exitConfig, wantErr)
			}
			if _, err := os.Stat(data); !os.IsNotExist(err) {
				t.Errorf("serve with a bad configuration created its data directory (stat: %v)", err)
			}
		})
	}
}

// TestConfigErrorsOtherCommands: user and deliver read -c too, and fail the
// same way.
func TestConfigErrorsOtherCommands(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "popbox.toml")
	writeFile(t, file, "[pop3]\nidle_timeot = \"10m\"\n")
	data := filepath.Join(dir, "data")
	wantErr := fmt.Sprintf("%s:2: pop3.idle_timeot: unknown key", file)
	for _, args := range [][]string{
		{"user", "list"},
		{"user", "add", "alice"},
		{"user", "passwd", "alice"},
		{"user", "del", "alice"},
		{"deliver", "alice"},
	} {
		args = append(args, "-c", file, "--data", data)
		r := runCLI(t, "pw\n", args...)
		if r.Code != exitConfig || r.Stdout != "" || !strings.Contains(r.Stderr, wantErr) {
			t.Errorf("popbox %s: exit %d, stdout %q, stderr %q; want exit %d and an error containing %q",
				strings.Join(args, " "), r.Code, r.Stdout, r.Stderr, exitConfig, wantErr)
		}
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Errorf("a command with a bad configuration created the data directory (stat: %v)", err)
	}
}
