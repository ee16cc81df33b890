package kps

import (
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzParseTables: any input either parses into valid tables that survive
// a round trip, or fails with ErrInvalid; never a panic.
func FuzzParseTables(f *testing.F) {
	good := `[{"collection":"Keys","name":"API keys","alias":"apikeys","properties":[{"name":"id","type":"string","generated":true},{"name":"n","type":"long"}],"primaryKey":"id","secondaryKey":"n"}]`
	for _, s := range []string{good, "", "[", "[{", `[{"alias"`, `[{"alias":`, `[{"alias":"a"`, good[:len(good)-1], good + " ", "[]", "null", `[null]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tables, err := ParseTables(data)
		if err != nil {
			return
		}
		b, err := json.Marshal(tables)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseTables(b)
		if err != nil || len(again) != len(tables) {
			t.Fatalf("round trip: %v", err)
		}
		for i := range again {
			if !again[i].Equal(&tables[i]) {
				t.Fatalf("round trip changed table %d", i)
			}
		}
	})
}

// FuzzDecode: stored data that decodes re-encodes to the same values.
func FuzzDecode(f *testing.F) {
	tb := sample()
	for _, s := range []string{`{"id":"a","n":1,"big":-2,"f":0.5,"l":["x"],"m":{"k":"v"},"enabled":true}`, "", "{", `{"id"`, `{"id":`, `{"n":1e3}`, `{"f":-0}`, `{"l":null}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		vals, err := tb.Decode(data)
		if err != nil {
			return
		}
		norm, err := tb.Normalize(vals)
		if err != nil {
			t.Fatalf("decoded values do not normalize: %v", err)
		}
		b, err := json.Marshal(norm)
		if err != nil {
			t.Fatal(err)
		}
		again, err := tb.Decode(b)
		if err != nil || !reflect.DeepEqual(again, vals) {
			t.Fatalf("round trip: got %#v, %v, want %#v", again, err, vals)
		}
	})
}

// FuzzDecodeCursor: no panic; a decoded cursor encodes to one that decodes
// to the same key.
func FuzzDecodeCursor(f *testing.F) {
	for _, s := range []string{"", "YQ", "YQ=", "!", EncodeCursor("key/with+chars")} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, c string) {
		after, err := DecodeCursor(c)
		if err != nil || c == "" {
			return
		}
		if again, err := DecodeCursor(EncodeCursor(after)); err != nil || again != after {
			t.Fatalf("round trip of %q: got %q, %v", after, again, err)
		}
	})
}
