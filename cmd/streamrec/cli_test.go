package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// testEnv returns an Env with captured output and the given variables.
func testEnv(vars map[string]string) (Env, *bytes.Buffer, *bytes.Buffer) {
	var out, errb bytes.Buffer
	return Env{
		Stdin:  strings.NewReader(""),
		Stdout: &out,
		Stderr: &errb,
		Getenv: func(k string) string { return vars[k] },
	}, &out, &errb
}

func TestMainUsageAndUnknownCommand(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want int
		msg  string
	}{
		{"no args", nil, 2, "usage: streamrec COMMAND"},
		{"help", []string{"--help"}, 0, "commands:"},
		{"unknown", []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env, _, errb := testEnv(nil)
			if got := Main(context.Background(), tc.args, env); got != tc.want {
				t.Fatalf("exit %d, want %d; stderr: %s", got, tc.want, errb)
			}
			if !strings.Contains(errb.String(), tc.msg) {
				t.Fatalf("stderr %q lacks %q", errb, tc.msg)
			}
		})
	}
}

func TestParseFlagsEnvironment(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		vars     map[string]string
		wantAddr string
		wantN    int
		wantErr  bool
	}{
		{"defaults", nil, nil, ":8080", 10, false},
		{"env fills", nil, map[string]string{"STREAMREC_ADDR": ":9", "STREAMREC_BATCH_SIZE": "7"}, ":9", 7, false},
		{"flag beats env", []string{"--addr", ":1"}, map[string]string{"STREAMREC_ADDR": ":9"}, ":1", 10, false},
		{"bad env value", nil, map[string]string{"STREAMREC_BATCH_SIZE": "many"}, "", 0, true},
		{"bad flag", []string{"--nope"}, nil, "", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env, _, _ := testEnv(tc.vars)
			fs := newFlagSet("x", env)
			addr := fs.String("addr", ":8080", "")
			n := fs.Int("batch-size", 10, "")
			err := parseFlags(fs, tc.args, env)
			if tc.wantErr {
				if _, ok := err.(*usageError); !ok {
					t.Fatalf("err = %v, want a usage error", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if *addr != tc.wantAddr || *n != tc.wantN {
				t.Fatalf("addr=%q n=%d, want %q %d", *addr, *n, tc.wantAddr, tc.wantN)
			}
		})
	}
}
