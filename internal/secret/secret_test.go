package secret

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestValueNeverPrints(t *testing.T) {
	v := FromString("hunter2")
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "pw", v, "s", struct{ P Value }{v})
	j, _ := json.Marshal(map[string]any{"pw": v})
	outs := []string{fmt.Sprint(v), fmt.Sprintf("%v %+v %#v %s", v, v, v, v), buf.String(), string(j)}
	for _, o := range outs {
		if strings.Contains(o, "hunter2") {
			t.Errorf("secret leaked in %q", o)
		}
	}
	if v.RevealString() != "hunter2" {
		t.Errorf("got %q, want hunter2", v.RevealString())
	}
}

// TestValueMethods: IsZero, Equal (by content) and Wipe.
func TestValueMethods(t *testing.T) {
	if !(Value{}).IsZero() || !FromString("").IsZero() || FromString("x").IsZero() {
		t.Error("IsZero: wrong")
	}
	if !FromString("abc").Equal(FromString("abc")) || FromString("abc").Equal(FromString("abd")) || FromString("abc").Equal(FromString("ab")) {
		t.Error("Equal: wrong")
	}
	b := []byte("wipe me")
	New(b).Wipe()
	if string(b) != "\x00\x00\x00\x00\x00\x00\x00" {
		t.Errorf("Wipe left %q", b)
	}
}
