package kpsbackup

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
)

var people = kps.Table{
	Collection: "Test", Name: "People", Alias: "people",
	Properties: []kps.Property{
		{Name: "id", Type: kps.String}, {Name: "email", Type: kps.String}, {Name: "ok", Type: kps.Boolean},
		{Name: "age", Type: kps.Integer}, {Name: "big", Type: kps.Long}, {Name: "score", Type: kps.Double},
		{Name: "tags", Type: kps.List}, {Name: "attrs", Type: kps.Map},
	},
	PrimaryKey: "id", SecondaryKey: "email", Indexes: []string{"ok"},
}

var empty = kps.Table{Collection: "Test", Name: "Empty", Alias: "empty",
	Properties: []kps.Property{{Name: "n", Type: kps.Long}}, PrimaryKey: "n"}

func sample() []Table {
	return []Table{
		{Def: people, Rows: []kps.Row{
			{Values: map[string]any{"id": "a", "email": "a@x", "ok": true, "age": int32(42), "big": int64(1)<<62 + 1, "score": 0.1,
				"tags": []string{"x", "é"}, "attrs": map[string]string{"k": "v\n\"q\""}}, Version: 3},
			{Values: map[string]any{"id": "b"}, Version: 1},
		}},
		{Def: empty},
	}
}

const testUUID = "0b7e5c1a-3d2f-4e6a-9b8c-1d2e3f4a5b6c"

func write(t testing.TB, tables []Table) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, tb := range tables {
		if err := w.Table(tb.Def); err != nil {
			t.Fatal(err)
		}
		for _, r := range tb.Rows {
			if err := w.Row(r); err != nil {
				t.Fatal(err)
			}
		}
	}
	m, err := w.Close(Manifest{UUID: testUUID, Gatehouse: "test", Created: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC),
		GroupID: "group-2", GroupName: "g", InstanceID: "instance-1", InstanceName: "i", Backend: "sqlite"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []TableCount{{"people", int64(len(tables[0].Rows))}, {"empty", 0}}; len(tables) == 2 && !reflect.DeepEqual(m.Tables, want) {
		t.Errorf("manifest tables: got %v, want %v", m.Tables, want)
	}
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	data := write(t, sample())
	b, err := Parse(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, data)
	}
	if !reflect.DeepEqual(b.Tables, sample()) {
		t.Errorf("tables: got %+v, want %+v", b.Tables, sample())
	}
	if b.Manifest.UUID != testUUID || b.Manifest.GroupID != "group-2" || len(b.Manifest.Tables) != 2 || b.Manifest.Tables[0].Rows != 2 {
		t.Errorf("manifest: got %+v", b.Manifest)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 7 || lines[0] != `{"format":"gatehouse-kps-backup","version":1}` || !strings.HasPrefix(lines[6], `{"sha256":"`) {
		t.Errorf("the file's lines:\n%s", data)
	}
}

// Every byte changed: refused, or (a change Go's JSON reading cannot see,
// such as a key's case) read as the same backup. Never another backup.
func TestFlippedBytes(t *testing.T) {
	data := write(t, sample())
	want, err := Parse(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	same := 0
	for i := range data {
		for _, mask := range []byte{0x01, 0x20, 0x80} {
			bad := bytes.Clone(data)
			bad[i] ^= mask
			got, err := Parse(bytes.NewReader(bad))
			if err == nil {
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("byte %d ^ %#x (%q): read as another backup", i, mask, data[i])
				}
				same++
				continue
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("byte %d ^ %#x: the error does not wrap ErrCorrupt: %v", i, mask, err)
			}
		}
	}
	t.Logf("%d of %d changes read as the same backup", same, 3*len(data))
	if same > 10 {
		t.Errorf("%d changes went unnoticed", same)
	}
}

func TestTruncated(t *testing.T) {
	data := write(t, sample())
	for n, says := range map[int]string{0: "empty file", len(data) - 1: "no line end", len(data) - 5: "no line end"} {
		if _, err := Parse(bytes.NewReader(data[:n])); err == nil || !strings.Contains(err.Error(), says) {
			t.Errorf("cut at %d of %d bytes: got %v, want an error saying %q", n, len(data), err, says)
		}
	}
	last := bytes.LastIndexByte(data[:len(data)-1], '\n') + 1
	if _, err := Parse(bytes.NewReader(data[:last])); err == nil || !strings.Contains(err.Error(), "no checksum line: the file ends at line 6") {
		t.Errorf("without the checksum line: got %v", err)
	}
	manifest := bytes.LastIndexByte(data[:last-1], '\n') + 1
	if _, err := Parse(bytes.NewReader(data[:manifest])); err == nil || !strings.Contains(err.Error(), "no manifest: the file ends at line 5") {
		t.Errorf("without the manifest: got %v", err)
	}
	if _, err := Parse(bytes.NewReader(append(bytes.Clone(data), "\n"...))); err == nil || !strings.Contains(err.Error(), "line 8: data after the checksum line") {
		t.Errorf("an empty line after the checksum: got %v", err)
	}
	for n := 0; n < len(data); n++ {
		if _, err := Parse(bytes.NewReader(data[:n])); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("cut at %d of %d bytes: got %v, want ErrCorrupt", n, len(data), err)
		}
	}
	if _, err := Parse(bytes.NewReader(append(bytes.Clone(data), "{}\n"...))); !errors.Is(err, ErrCorrupt) {
		t.Errorf("a line after the checksum: got %v, want ErrCorrupt", err)
	}
}

// reseal replaces the last line by the checksum of the lines before it: a
// file that was changed on purpose and sealed again.
func reseal(t *testing.T, lines []string) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf)
	w.h.Reset()
	body := strings.Join(lines, "\n") + "\n"
	w.h.Write([]byte(body))
	sum := w.h.Sum(nil)
	return []byte(body + `{"sha256":"` + hexString(sum) + `"}` + "\n")
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

// Files whose checksum matches but whose records do not fit are refused:
// the checks behind the checksum.
func TestResealed(t *testing.T) {
	data := write(t, sample())
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	lines = lines[:len(lines)-1] // without the checksum
	if _, err := Parse(bytes.NewReader(reseal(t, lines))); err != nil {
		t.Fatalf("resealed unchanged: %v", err)
	}
	row := func(s string) string { return `{"row":{"table":"people","version":1,"values":` + s + `}}` }
	for _, c := range []struct {
		name, says string
		change     func([]string) []string
	}{
		{"unknown property", `no property "colour"`, func(l []string) []string { return ins(l, 3, row(`{"id":"c","colour":"red"}`)) }},
		{"wrong type", `property "age"`, func(l []string) []string { return ins(l, 3, row(`{"id":"c","age":"old"}`)) }},
		{"integer out of range", `property "age"`, func(l []string) []string { return ins(l, 3, row(`{"id":"c","age":4294967296}`)) }},
		{"null value", `property "email" is null`, func(l []string) []string { return ins(l, 3, row(`{"id":"c","email":null}`)) }},
		{"no primary key", `primary key "id" is missing`, func(l []string) []string { return ins(l, 3, row(`{"email":"c@x"}`)) }},
		{"primary key twice", `primary key "a" given twice`, func(l []string) []string { return ins(l, 3, row(`{"id":"a"}`)) }},
		{"secondary key twice", `secondary key "a@x" given twice`, func(l []string) []string { return ins(l, 3, row(`{"id":"c","email":"a@x"}`)) }},
		{"values not an object", "want a JSON object", func(l []string) []string { return ins(l, 3, row(`[1]`)) }},
		{"values null", "want a JSON object", func(l []string) []string { return ins(l, 3, row(`null`)) }},
		{"version 0", "version 0: want 1 or more", func(l []string) []string {
			return ins(l, 3, strings.Replace(row(`{"id":"c"}`), `"version":1`, `"version":0`, 1))
		}},
		{"undeclared table", "line 2: a row of table \"people\", which is not declared", func(l []string) []string { return ins(l, 1, row(`{"id":"c"}`)) }},
		{"table twice", `table "people" declared twice`, func(l []string) []string { return ins(l, 4, l[1]) }},
		{"invalid table", `alias ""`, func(l []string) []string { return ins(l, 4, `{"table":{"alias":""}}`) }},
		{"no manifest", "the checksum line comes before the manifest", func(l []string) []string { return l[:len(l)-1] }},
		{"manifest twice", "line 7: a record after the manifest", func(l []string) []string { return append(l, l[len(l)-1]) }},
		{"row after the manifest", "a record after the manifest", func(l []string) []string { return ins(l, len(l), row(`{"id":"c"}`)) }},
		{"count differs", `table "people": 3 rows, the file holds 2`, func(l []string) []string { return replaceLast(l, `"rows":2`, `"rows":3`) }},
		{"tables differ", `table 2 is "other", the file's is "empty"`, func(l []string) []string { return replaceLast(l, `"alias":"empty"`, `"alias":"other"`) }},
		{"a table less", "lists 1 tables, the file holds 2", func(l []string) []string { return replaceLast(l, `,{"alias":"empty","rows":0}`, ``) }},
		{"bad uuid", `uuid "x" is not a UUID`, func(l []string) []string { return replaceLast(l, testUUID, "x") }},
		{"no time", "no creation time", func(l []string) []string { return replaceLast(l, `"2026-12-06T10:00:00Z"`, `"0001-01-01T00:00:00Z"`) }},
		{"two kinds in a record", "exactly one of", func(l []string) []string { return ins(l, 3, `{"sha256":"00","table":{}}`) }},
		{"unknown record", "not a record", func(l []string) []string { return ins(l, 3, `{"comment":"hi"}`) }},
		{"format again", "line 4: the format line again", func(l []string) []string { return ins(l, 3, l[0]) }},
		{"version alone", "the format line again", func(l []string) []string { return ins(l, 3, `{"version":1}`) }},
		{"format alone", "the format line again", func(l []string) []string { return ins(l, 3, `{"format":"x"}`) }},
		{"checksum before the manifest", "comes before the manifest", func(l []string) []string { return ins(l, 3, `{"sha256":"00"}`) }},
		{"other format", `want the first line gatehouse-kps-backup version 1, got "tar"`, func(l []string) []string { return append([]string{`{"format":"tar","version":1}`}, l[1:]...) }},
		{"version 2", "version 2", func(l []string) []string {
			return append([]string{`{"format":"gatehouse-kps-backup","version":2}`}, l[1:]...)
		}},
		{"first line a table", "want the first line", func(l []string) []string { return l[1:] }},
		{"two objects a line", "after the record", func(l []string) []string { return ins(l, 3, row(`{"id":"c"}`)+` {}`) }},
		{"empty line", "not a record", func(l []string) []string { return ins(l, 3, ``) }},
	} {
		_, err := Parse(bytes.NewReader(reseal(t, c.change(append([]string(nil), lines...)))))
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: got %v, want ErrCorrupt saying %q", c.name, err, c.says)
		}
	}
}

func ins(l []string, at int, s string) []string {
	return append(l[:at:at], append([]string{s}, l[at:]...)...)
}

func replaceLast(l []string, old, new string) []string {
	l[len(l)-1] = strings.Replace(l[len(l)-1], old, new, 1)
	return l
}

// Lines up to maxLine bytes are read; longer ones are refused as such.
func TestLongLines(t *testing.T) {
	head := `{"format":"gatehouse-kps-backup","version":1}` + "\n"
	const limit = 8<<20 + 64<<10 // a row's 8 MiB and room for the record around it
	for n, tooLong := range map[int]bool{limit: false, limit + 1: true} {
		line := `{"x":"` + strings.Repeat("a", n-len(`{"x":""}`+"\n")) + `"}` + "\n"
		_, err := Parse(strings.NewReader(head + line))
		if got := err != nil && strings.Contains(err.Error(), "longer than"); got != tooLong || !errors.Is(err, ErrCorrupt) {
			t.Errorf("a line of %d bytes: got %v, want refused as too long %v", n, err, tooLong)
		}
	}
}

// A reader that fails: its error, not ErrCorrupt.
func TestReadError(t *testing.T) {
	data := write(t, sample())
	boom := errors.New("disk on fire")
	_, err := Parse(io.MultiReader(bytes.NewReader(data[:100]), iotest.ErrReader(boom)))
	if !errors.Is(err, boom) || errors.Is(err, ErrCorrupt) {
		t.Errorf("a failing reader: got %v, want its error", err)
	}
}

// failAfter accepts n bytes, then fails.
type failAfter struct{ n int }

var errFull = errors.New("disk full")

func (f *failAfter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		n := f.n
		f.n = 0
		return n, errFull
	}
	f.n -= len(p)
	return len(p), nil
}

func TestWriterFails(t *testing.T) {
	big := kps.Row{Values: map[string]any{"id": "big", "tags": []string{strings.Repeat("x", 100<<10)}}}
	// The buffer fills and the write fails: every later call says so.
	w := NewWriter(&failAfter{n: 1000})
	if err := w.Table(people); err != nil {
		t.Fatal(err)
	}
	if err := w.Row(big); !errors.Is(err, errFull) {
		t.Errorf("Row on a full disk: got %v, want errFull", err)
	}
	// (Not checked again after the failure: the failure is what they say.)
	if err := w.Row(kps.Row{Values: map[string]any{"id": 1}}); !errors.Is(err, errFull) {
		t.Errorf("Row after a failure: got %v, want errFull", err)
	}
	if err := w.Table(kps.Table{Alias: "x"}); !errors.Is(err, errFull) {
		t.Errorf("Table after a failure: got %v, want errFull", err)
	}
	if _, err := w.Close(Manifest{UUID: testUUID}); !errors.Is(err, errFull) {
		t.Errorf("Close after a failure: got %v, want errFull", err)
	}
	// Failing at the flush in Close, and at a table that fills the buffer.
	w = NewWriter(&failAfter{n: 10})
	if _, err := w.Close(Manifest{UUID: testUUID}); !errors.Is(err, errFull) {
		t.Errorf("Close on a full disk: got %v, want errFull", err)
	}
	wide := people.Clone()
	wide.Name = strings.Repeat("n", kps.MaxLabelLen)
	for i := 0; i < 240; i++ {
		wide.Properties = append(wide.Properties, kps.Property{Name: fmt.Sprintf("p%03d_%s", i, strings.Repeat("q", 50)), Type: kps.String})
	}
	wide.Alias = "wide"
	w = NewWriter(&failAfter{n: 10})
	w.Table(people)
	if err := w.Row(kps.Row{Values: map[string]any{"id": "a", "tags": []string{strings.Repeat("x", 60<<10)}}}); err != nil {
		t.Fatalf("a row that the buffer holds: %v", err)
	}
	if err := w.Table(wide); !errors.Is(err, errFull) {
		t.Errorf("Table on a full disk: got %v, want errFull", err)
	}
}

// A version below 1 is written as 1; a backup without tables is one.
func TestWriterEdges(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	w.Table(empty)
	w.Row(kps.Row{Values: map[string]any{"n": int64(7)}})
	if _, err := w.Close(Manifest{UUID: testUUID, Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	b, err := Parse(&buf)
	if err != nil || b.Tables[0].Rows[0].Version != 1 {
		t.Errorf("a row of version 0: %v, %+v; want version 1", err, b)
	}
	buf.Reset()
	m, err := NewWriter(&buf).Close(Manifest{UUID: testUUID, Created: time.Now()})
	if err != nil || m.Tables == nil || !strings.Contains(buf.String(), `"tables":[]`) {
		t.Errorf("a backup without tables: %v, %+v\n%s", err, m, buf.String())
	}
	if _, err := Parse(&buf); err != nil {
		t.Errorf("a backup without tables: %v", err)
	}
}

func TestWriterRefuses(t *testing.T) {
	w := NewWriter(&bytes.Buffer{})
	if err := w.Row(kps.Row{Values: map[string]any{"id": "a"}}); err == nil {
		t.Error("a row before any table was written")
	}
	if err := w.Table(kps.Table{Alias: "x"}); err == nil {
		t.Error("an invalid table was written")
	}
	if err := w.Table(people); err != nil {
		t.Fatal(err)
	}
	if err := w.Table(people); err == nil {
		t.Error("a table was written twice")
	}
	if err := w.Row(kps.Row{Values: map[string]any{"id": 1}}); err == nil {
		t.Error("a row that does not fit its table was written")
	}
}

func TestValidUUID(t *testing.T) {
	for s, want := range map[string]bool{
		testUUID: true, kps.NewUUID(): true, "": false, strings.ToUpper(testUUID): false,
		testUUID + "x": false, "../" + testUUID[3:]: false, strings.Replace(testUUID, "-", "x", 1): false,
	} {
		if got := ValidUUID(s); got != want {
			t.Errorf("ValidUUID(%q): got %v, want %v", s, got, want)
		}
	}
}

// FuzzParse: Parse never panics, and what it accepts writes back to a
// backup that parses to the same tables.
func FuzzParse(f *testing.F) {
	data := write(f, sample())
	f.Add(data)
	for _, n := range []int{0, 1, len(data) / 2, len(data) - 2, len(data) - 1} { // end-of-input seeds
		f.Add(data[:n])
	}
	f.Add([]byte("{\"format\":\"gatehouse-kps-backup\",\"version\":1}\n"))
	f.Add([]byte("\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		b, err := Parse(bytes.NewReader(in))
		if err != nil {
			if b != nil {
				t.Fatal("a backup with an error")
			}
			return
		}
		var buf bytes.Buffer
		w := NewWriter(&buf)
		for _, tb := range b.Tables {
			if err := w.Table(tb.Def); err != nil {
				t.Fatalf("writing back a table Parse accepted: %v", err)
			}
			for _, r := range tb.Rows {
				if err := w.Row(r); err != nil {
					t.Fatalf("writing back a row Parse accepted: %v", err)
				}
			}
		}
		if _, err := w.Close(b.Manifest); err != nil {
			t.Fatal(err)
		}
		again, err := Parse(&buf)
		if err != nil {
			t.Fatalf("the backup written back does not parse: %v\n%s", err, buf.Bytes())
		}
		if !reflect.DeepEqual(again.Tables, b.Tables) {
			t.Fatalf("written back: got %+v, want %+v", again.Tables, b.Tables)
		}
	})
}

// An export of a shared store carries its shared secrets: written, listed
// in the manifest, read back; a secret repeated, empty, or not as the
// manifest lists it is refused.
func TestSecrets(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	if err := w.Table(empty); err != nil {
		t.Fatal(err)
	}
	if err := w.Secret("apikeys.hashkey", []byte{0, 1, 0xff}); err != nil {
		t.Fatal(err)
	}
	if err := w.Secret("tls.tickets", []byte("k")); err != nil {
		t.Fatal(err)
	}
	if err := w.Secret("tls.tickets", []byte("again")); err == nil || !strings.Contains(err.Error(), "written twice") {
		t.Errorf("a secret written twice: got %v", err)
	}
	if err := w.Secret("", []byte("v")); err == nil {
		t.Error("a secret without a name was written")
	}
	if err := w.Secret("n", nil); err == nil {
		t.Error("a secret without a value was written")
	}
	m, err := w.Close(Manifest{UUID: testUUID, Gatehouse: "test", Created: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"apikeys.hashkey", "tls.tickets"}; !reflect.DeepEqual(m.Secrets, want) {
		t.Errorf("manifest secrets: got %q, want %q", m.Secrets, want)
	}
	b, err := Parse(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, buf.Bytes())
	}
	if want := []Secret{{"apikeys.hashkey", []byte{0, 1, 0xff}}, {"tls.tickets", []byte("k")}}; !reflect.DeepEqual(b.Secrets, want) {
		t.Errorf("secrets: got %q, want %q", b.Secrets, want)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	lines = lines[:len(lines)-1]
	for _, c := range []struct {
		name, says string
		change     func([]string) []string
	}{
		{"secret twice", `shared secret "tls.tickets" given twice`, func(l []string) []string { return ins(l, 4, l[3]) }},
		{"no name", "without a name or a value", func(l []string) []string { return ins(l, 4, `{"secret":{"name":"","value":"AA=="}}`) }},
		{"no value", "without a name or a value", func(l []string) []string { return ins(l, 4, `{"secret":{"name":"x"}}`) }},
		{"a secret less", `lists shared secrets ["apikeys.hashkey" "tls.tickets"], the file holds ["apikeys.hashkey"]`, func(l []string) []string {
			return append(l[:3:3], l[4:]...)
		}},
		{"manifest without them", "lists shared secrets []", func(l []string) []string {
			return replaceLast(l, `,"secrets":["apikeys.hashkey","tls.tickets"]`, ``)
		}},
	} {
		_, err := Parse(bytes.NewReader(reseal(t, c.change(append([]string(nil), lines...)))))
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: got %v, want ErrCorrupt saying %q", c.name, err, c.says)
		}
	}
}
