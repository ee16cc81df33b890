package tools

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The tables of options in docs/ are held to the code's tables, as the
// configuration keys table is (#15): a verb the docs list and the code
// lacks, or the other way round, fails here.

func readDoc(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// docsFlagRE finds the --flags of a table cell.
var docsFlagRE = regexp.MustCompile("`--([a-z_]+)`")

// docs/managedomain.md's menu table: each row's flags are exactly the
// verbs of that menu number, and "not available yet" exactly when there
// are none.
func TestDocsMenuTable(t *testing.T) {
	doc := readDoc(t, "managedomain.md")
	row := regexp.MustCompile(`(?m)^\| (\d+) \| [^|]+ \| ([^|]+) \|$`)
	seen := map[int]bool{}
	for _, m := range row.FindAllStringSubmatch(doc, -1) {
		n, _ := strconv.Atoi(m[1])
		seen[n] = true
		var docVerbs []string
		for _, f := range docsFlagRE.FindAllStringSubmatch(m[2], -1) {
			docVerbs = append(docVerbs, f[1])
		}
		var codeVerbs []string
		for _, vb := range menuVerbs(n) {
			codeVerbs = append(codeVerbs, vb.Name)
		}
		slices.Sort(docVerbs)
		slices.Sort(codeVerbs)
		if !slices.Equal(docVerbs, codeVerbs) {
			t.Errorf("menu %d: the docs list %v, the code has %v", n, docVerbs, codeVerbs)
		}
		if na := strings.Contains(m[2], "not available yet"); na != (len(codeVerbs) == 0) {
			t.Errorf("menu %d: docs say not available %v, the code has %v", n, na, codeVerbs)
		}
	}
	for n := 1; n < len(vendorMenu); n++ {
		if !seen[n] {
			t.Errorf("menu %d (%s) is not in the docs' table", n, vendorMenu[n])
		}
	}
}

// docs/client.md's verb table lists every client verb, and nothing else
// (start|stop|status share a row).
func TestDocsClientTable(t *testing.T) {
	doc := readDoc(t, "client.md")
	cell := regexp.MustCompile("(?m)^\\| `([^`]+)`")
	var docVerbs []string
	for _, m := range cell.FindAllStringSubmatch(doc, -1) {
		for _, alt := range strings.Split(m[1], `\|`) {
			var words []string
			for _, w := range strings.Fields(alt) {
				if w != strings.ToLower(w) || strings.HasPrefix(w, "-") || strings.HasPrefix(w, "[") {
					break // GROUP, --option, [FILE]: the arguments
				}
				words = append(words, w)
			}
			if len(words) > 0 { // other tables start with an option or an argument
				docVerbs = append(docVerbs, strings.Join(words, " "))
			}
		}
	}
	var codeVerbs []string
	for _, v := range clientVerbs {
		codeVerbs = append(codeVerbs, v.name)
	}
	slices.Sort(docVerbs)
	docVerbs = slices.Compact(docVerbs)
	slices.Sort(codeVerbs)
	if !slices.Equal(docVerbs, codeVerbs) {
		t.Errorf("docs/client.md lists %q, the client has %q", docVerbs, codeVerbs)
	}
}

// docs/kpsadmin.md's verb table is kpsVerbs (numbers, names, "not
// available yet" exactly for the later ones), and its options table is
// kpsFlags.
func TestDocsKpsadminTables(t *testing.T) {
	doc := readDoc(t, "kpsadmin.md")
	row := regexp.MustCompile("(?m)^\\| (\\d+) \\| `([a-z_]+)` \\| ([^|]+) \\|$")
	var got []string
	for _, m := range row.FindAllStringSubmatch(doc, -1) {
		n, _ := strconv.Atoi(m[1])
		vb := kpsFindVerb(m[2])
		switch {
		case vb == nil:
			t.Errorf("the docs list verb %q, the code has none", m[2])
			continue
		case vb.Menu != n:
			t.Errorf("verb %s: the docs say menu %d, the code %d", vb.Name, n, vb.Menu)
		}
		if na := strings.Contains(m[3], "not available yet"); na != (vb.Later != "") {
			t.Errorf("verb %s: docs say not available %v, the code %q", vb.Name, na, vb.Later)
		}
		got = append(got, m[2])
	}
	if want := kpsVerbNames(); !slices.Equal(got, want) {
		t.Errorf("the docs' verbs: got %v, want %v (menu order)", got, want)
	}
	opt := regexp.MustCompile("(?m)^\\| `(?:-([a-zA-Z]), )?--([a-z_]+)(?: [A-Z]+)?` \\|")
	var docFlags, codeFlags []string
	for _, m := range opt.FindAllStringSubmatch(doc, -1) {
		docFlags = append(docFlags, m[1]+"/"+m[2])
	}
	for _, f := range kpsFlags {
		codeFlags = append(codeFlags, f.Short+"/"+f.Long)
	}
	if !slices.Equal(docFlags, codeFlags) {
		t.Errorf("the docs' options: got %v, want %v", docFlags, codeFlags)
	}
}
