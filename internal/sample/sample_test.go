package sample

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestSample(t *testing.T) {
	h := New(nil)
	tests := []struct {
		method, target, body string
		wantStatus           int
		wantInBody           string
	}{
		{"GET", "/echo", "", 200, `"method":"GET"`},
		{"POST", "/echo/a/b?x=1", "hello", 200, `"body":"hello"`},
		{"POST", "/echo/a/b?x=1", "hello", 200, `"query":"x=1"`},
		{"PUT", "/echo/a/b", "", 200, `"path":"/echo/a/b"`},
		{"POST", "/echo", strings.Repeat("x", MaxBody+1), 413, `"code":413`},
		{"POST", "/echo", strings.Repeat("x", MaxBody), 200, `"method":"POST"`},
		{"GET", "/echox", "", 404, `"code":404`},
		{"GET", "/delay/0", "", 200, `{"delayedMs":0}`},
		{"GET", "/delay/1", "", 200, `{"delayedMs":1}`},
		{"GET", "/delay/60001", "", 400, `"code":400`},
		{"GET", "/delay/-1", "", 400, `"code":400`},
		{"GET", "/delay/abc", "", 400, `"code":400`},
		{"GET", "/status/418", "", 418, `"status":418`},
		{"GET", "/status/503", "", 503, `"text":"Service Unavailable"`},
		{"GET", "/status/204", "", 204, ``},
		{"GET", "/status/101", "", 400, `informational`},
		{"GET", "/status/600", "", 400, `"code":400`},
		{"GET", "/status/99", "", 400, `"code":400`},
		{"GET", "/", "", 404, `"errors"`},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(tt.method, tt.target, strings.NewReader(tt.body))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tt.wantStatus {
			t.Errorf("%s %s: status: got %v, want %v", tt.method, tt.target, w.Code, tt.wantStatus)
		}
		if !strings.Contains(w.Body.String(), tt.wantInBody) {
			t.Errorf("%s %s: body: got %.200s, want it to contain %s", tt.method, tt.target, w.Body.String(), tt.wantInBody)
		}
		if w.Code != 204 {
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("%s %s: Content-Type: got %q, want application/json", tt.method, tt.target, ct)
			}
		}
	}
}

func TestEchoHeaders(t *testing.T) {
	r := httptest.NewRequest("GET", "/echo", nil)
	r.Header.Add("X-Multi", "a")
	r.Header.Add("X-Multi", "b")
	w := httptest.NewRecorder()
	New(nil).ServeHTTP(w, r)
	var e Echo
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(e.Headers["X-Multi"], ","); got != "a,b" {
		t.Errorf("X-Multi: got %q, want %q", got, "a,b")
	}
	if e.RemoteAddr != r.RemoteAddr {
		t.Errorf("remoteAddr: got %q, want %q", e.RemoteAddr, r.RemoteAddr)
	}
}

func TestDelayHonoursCancellation(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	r := httptest.NewRequestWithContext(ctx, "GET", "/delay/60000", nil)
	w := httptest.NewRecorder()
	New(nil).ServeHTTP(w, r) // returns at once: the context is already done
	if w.Body.Len() != 0 {
		t.Errorf("body: got %q, want none", w.Body.String())
	}
}

var _ http.Handler = (*Handler)(nil)
