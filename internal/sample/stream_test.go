package sample

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/coder/websocket"
)

func TestUploadSSEAndWebSocket(t *testing.T) {
	srv := httptest.NewServer(New(nil))
	defer srv.Close()

	body := strings.Repeat("x", 100000)
	resp, err := http.Post(srv.URL+"/upload", "application/octet-stream", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var up struct {
		Bytes  int64  `json:"bytes"`
		SHA256 string `json:"sha256"`
	}
	json.NewDecoder(resp.Body).Decode(&up)
	resp.Body.Close()
	sum := sha256.Sum256([]byte(body))
	if up.Bytes != int64(len(body)) || up.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("upload: got %+v, want %d bytes", up, len(body))
	}

	resp, err = http.Get(srv.URL + "/sse?n=3&ms=1")
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("sse content type: got %q", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	events := 0
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "data: ") {
			events++
		}
	}
	resp.Body.Close()
	if events != 3 {
		t.Errorf("sse: got %d events, want 3", events)
	}
	if resp, _ := http.Get(srv.URL + "/sse?n=-1"); resp == nil || resp.StatusCode != 400 {
		t.Errorf("sse with a bad n: want 400")
	}

	ctx := context.Background()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	for _, m := range []string{"one", "two"} {
		if err := c.Write(ctx, websocket.MessageText, []byte(m)); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.Read(ctx)
		if err != nil || string(got) != m {
			t.Errorf("ws echo: got %q %v, want %q", got, err, m)
		}
	}
	c.Close(websocket.StatusNormalClosure, "")
}
