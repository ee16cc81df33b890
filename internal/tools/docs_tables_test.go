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
