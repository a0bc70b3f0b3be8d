/*
Copyright 2026 The Keyward Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package main

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseStore(t *testing.T) {
	tests := []struct {
		in, kind, arg string
		ok            bool
	}{
		{"bolt:/var/lib/keyward/issuer.db", "bolt", "/var/lib/keyward/issuer.db", true},
		{"bolt:issuer.db", "bolt", "issuer.db", true},
		{"postgres://u:p@db:5432/keyward?sslmode=verify-full", "postgres", "postgres://u:p@db:5432/keyward?sslmode=verify-full", true},
		{"postgresql://db/keyward", "postgres", "postgresql://db/keyward", true},
		{"bolt:", "", "", false},
		{"bolt:/var/lib/", "", "", false},
		{"/var/lib/keyward/issuer.db", "", "", false},
		{"mysql://db", "", "", false},
		{"host=db dbname=keyward", "", "", false},
		{"", "", "", false},
	}
	for _, tt := range tests {
		got, err := parseStore(tt.in)
		if (err == nil) != tt.ok || got.kind != tt.kind || got.arg != tt.arg {
			t.Errorf("parseStore(%q) = %+v, %v", tt.in, got, err)
		}
		if err != nil && strings.Contains(err.Error(), "u:p") {
			t.Errorf("the error quotes the DSN: %v", err)
		}
	}
}

func TestValidateFlags(t *testing.T) {
	parse := func(args ...string) error {
		var o options
		fs := flag.NewFlagSet("issuer", flag.ContinueOnError)
		o.bind(fs)
		if err := fs.Parse(args); err != nil {
			return err
		}
		return o.validate()
	}
	if err := parse("--replay-key-file", "/k"); err != nil {
		t.Fatalf("defaults with a replay key: %v", err)
	}
	for _, args := range [][]string{
		{},
		{"--replay-key-file", "/k", "--store", "sqlite:/x"},
		{"--replay-key-file", "/k", "--tls-cert", "/c"},
		{"--replay-key-file", "/k", "--gc-interval", "0s"},
		{"--replay-key-file", "/k", "--gc-retain", "24h"}, // shorter than the longest revocation window
		{"--replay-key-file", "/k", "--dpop-nonce-lifetime", "1ms"},
	} {
		if err := parse(args...); err == nil {
			t.Errorf("flags %v were accepted", args)
		}
	}
}

func TestOpenAudit(t *testing.T) {
	w, closeFn, err := openAudit("-")
	if err != nil || w != os.Stdout {
		t.Fatalf("openAudit(-) = %v, %v", w, err)
	}
	closeFn()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	w, closeFn, err = openAudit(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("{}\n")); err != nil {
		t.Fatal(err)
	}
	closeFn()
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("audit file mode %v, %v", fi.Mode(), err)
	}
	if _, _, err := openAudit(filepath.Join(t.TempDir(), "missing", "dir", "audit")); err == nil {
		t.Fatal("an audit file in a missing directory opened")
	}
}
