package anm

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"

	apispec "github.com/gatehouse-gw/gatehouse/api"
	"go.yaml.in/yaml/v4"
)

// The management API's description (api/openapi.yaml) at
// GET /api/openapi.yaml and GET /api/openapi.json. Both are served without
// credentials: the document is public (it is in the repository) and a
// client reads it before it has any; it says nothing about the domain.

// openAPIArea serves the API's description, without credentials.
func (a *API) openAPIArea() area {
	return area{name: "description", routes: []route{
		{pattern: "/api/openapi.yaml", ops: map[string]op{http.MethodGet: read(a.serveOpenAPI("yaml"), "getOpenAPIYAML")}, open: true},
		{pattern: "/api/openapi.json", ops: map[string]op{http.MethodGet: read(a.serveOpenAPI("json"), "getOpenAPIJSON")}, open: true},
	}}
}

// openAPIJSON is the embedded document converted to JSON once.
var openAPIJSON = sync.OnceValues(func() ([]byte, error) { return yamlToJSON(apispec.YAML) })

// serveOpenAPI answers the description in format "yaml" or "json".
func (a *API) serveOpenAPI(format string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, ctype := apispec.YAML, "application/yaml; charset=utf-8"
		if format == "json" {
			b, err := openAPIJSON()
			if err != nil {
				a.fail(w, r, fmt.Errorf("converting api/openapi.yaml to JSON: %w", err))
				return
			}
			body, ctype = b, "application/json; charset=utf-8"
		}
		h := w.Header()
		h.Set("Content-Type", ctype)
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		w.Write(body)
	}
}

// yamlToJSON converts a YAML document to JSON; mapping keys that are not
// strings (an unquoted 200) become strings.
func yamlToJSON(y []byte) ([]byte, error) {
	var v any
	if err := yaml.Unmarshal(y, &v); err != nil {
		return nil, err
	}
	return json.Marshal(jsonValue(v))
}

func jsonValue(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			t[k] = jsonValue(e)
		}
		return t
	case map[any]any:
		m := make(map[string]any, len(t))
		for k, e := range t {
			m[fmt.Sprint(k)] = jsonValue(e)
		}
		return m
	case []any:
		for i, e := range t {
			t[i] = jsonValue(e)
		}
		return t
	}
	return v
}
