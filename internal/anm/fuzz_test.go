package anm

import (
	"bytes"
	"errors"
	"net/http"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/apihttp"
)

// FuzzAPIBodies feeds every request-body decoder of the management API: none
// panics, and each either yields a valid request or a 400/413 *apihttp.Error.
func FuzzAPIBodies(f *testing.F) {
	for _, s := range []string{
		`{"name":"G"}`, `{"name":"Server 1","hostID":"host-1","trafficPort":8080,"managementPort":8085}`,
		`{"id":"host-2","name":"gw2"}`, `{"name": "x",}`, `[]`, `null`, `{"name":5}`, `{"name":"a"}{"name":"b"}`,
		`{"name":"a","trafficPort":-1}`, `{"name":"\u0000"}`, `{"name":"a","type":"nodemanager"}`, "", `{"name":"x","extra":1}`,
		`{"trafficPort":1e400}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		check := func(what string, valid func() error, err error) {
			if err == nil {
				if verr := valid(); verr != nil {
					t.Fatalf("%s: decoded without error but invalid: %v", what, verr)
				}
				return
			}
			var ae *apihttp.Error
			if !errors.As(err, &ae) || (ae.Code != http.StatusBadRequest && ae.Code != http.StatusRequestEntityTooLarge) || ae.Msg == "" {
				t.Fatalf("%s: got %#v, want a 400 or 413 *apihttp.Error", what, err)
			}
		}
		g, err := parseGroupBody(bytes.NewReader(body))
		check("group", g.Validate, err)
		h, err := parseHostBody(bytes.NewReader(body))
		check("host", h.Validate, err)
		s, err := parseServiceBody(bytes.NewReader(body))
		check("service", s.Validate, err)
	})
}
