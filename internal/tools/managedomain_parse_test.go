package tools

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestSplitWords(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		err  bool
	}{
		{"", nil, false},
		{"  print_topology  ", []string{"print_topology"}, false},
		{`create_instance -n "My Server" -g 'Prod Group'`, []string{"create_instance", "-n", "My Server", "-g", "Prod Group"}, false},
		{`-n "it's" -g 'say "hi"'`, []string{"-n", "it's", "-g", `say "hi"`}, false},
		{`-n "a \"b\" \\ \$x"`, []string{"-n", `a "b" \ $x`}, false},
		{`-n a\ b 'x'"y"z`, []string{"-n", "a b", "xyz"}, false},
		{`-n ""`, []string{"-n", ""}, false},
		{`-n "open`, nil, true},
		{`-n 'open`, nil, true},
	}
	for _, tt := range tests {
		got, err := splitWords(tt.in)
		if (err != nil) != tt.err {
			t.Errorf("splitWords(%q): error %v, want error %v", tt.in, err, tt.err)
			continue
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("splitWords(%q): got %q, want %q", tt.in, got, tt.want)
		}
	}
}

func FuzzSplitWords(f *testing.F) {
	f.Add(`create_instance -n "My Server" -g 'Prod'`)
	f.Add(`a\ b "c\"d" 'e'`)
	f.Fuzz(func(t *testing.T, s string) {
		splitWords(s) // must not panic
	})
}

func TestParseMDArgs(t *testing.T) {
	tests := []struct {
		args []string
		verb string
		vals mdValues
		err  string
	}{
		{[]string{"-c", "-n", "A", "-g", "G"}, "create_instance", mdValues{"name": "A", "group": "G"}, ""},
		{[]string{"--create_instance", "--name=A", "--group", "G", "--traffic_port=1"}, "create_instance", mdValues{"name": "A", "group": "G", "traffic_port": "1"}, ""},
		{[]string{"-p", "--json"}, "print_topology", mdValues{"json": "true"}, ""},
		{[]string{"--menu"}, "menu", mdValues{}, ""},
		{[]string{"-c", "--bogus", "-h"}, "", nil, "unknown flag"},
		{[]string{"-c", "-n", "A", "-h"}, "help", nil, ""},
		{[]string{"-c", "-n", "A", "-n", "B", "-g", "G"}, "", nil, "given twice"},
		{[]string{"-p", "--json=yes"}, "", nil, "takes no value"},
		{[]string{"-p=1"}, "", nil, "takes no value"},
		{[]string{"-i", "--domain_name", "D"}, "", nil, "--username U (missing)"},
		{[]string{"--rename_group", "-g", "G"}, "", nil, "--new_name NEW (missing)"},
	}
	for _, tt := range tests {
		vb, vals, err := parseMDArgs(tt.args, nil)
		if tt.err != "" {
			var ue *UsageError
			if err == nil || !errors.As(err, &ue) || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: got %v, want a usage error with %q", tt.args, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tt.args, err)
			continue
		}
		if vb.Name != tt.verb {
			t.Errorf("%q: verb got %s, want %s", tt.args, vb.Name, tt.verb)
		}
		if tt.vals != nil && !mapsEqual(vals, tt.vals) {
			t.Errorf("%q: values got %v, want %v", tt.args, vals, tt.vals)
		}
	}
	// The interpreter parses flags of a given verb only.
	if _, _, err := parseMDArgs([]string{"-c"}, findVerb("print_topology")); err == nil {
		t.Error("interpreter accepted an operation flag as a parameter")
	}
}

// TestMenuNumbers keeps the vendor's numbers for the available options.
func TestMenuNumbers(t *testing.T) {
	want := map[int][]string{1: {"add_host"}, 2: {"edit_host"}, 3: {"delete_host"}, 4: {"change_credentials"}, 5: {"create_instance"}, 6: {"edit_instance"},
		7: {"delete_instance"}, 8: {"add_tag"}, 9: {"delete_tag"}, 10: {"add_service", "remove_service", "add_nm_service", "remove_nm_service"},
		11: {"rename_group"}, 12: {"delete_group"}, 13: {"print_topology"}, 14: {"check_topology"}, 15: {"compare_topology"}, 16: {"sync_topology"},
		17: {"reset_topology"}, 18: {"deploy"}, 19: {"list_deployments"}, 20: {"create_archive"}, 21: {"download_archive"}, 22: {"update_archive"}, 23: {"change_passphrase"}, 24: {"regen_certs"}, 25: {"sign_csr"}, 26: {"domain_csr", "submit_cert"}}
	for n := 1; n <= 26; n++ {
		var got []string
		for _, vb := range menuVerbs(n) {
			got = append(got, vb.Name)
		}
		if !slices.Equal(got, want[n]) {
			t.Errorf("menu %d: got %v, want %v", n, got, want[n])
		}
	}
	if len(vendorMenu) != 27 {
		t.Errorf("vendor menu has %d entries, want 26", len(vendorMenu)-1)
	}
}

func mapsEqual(a, b mdValues) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
