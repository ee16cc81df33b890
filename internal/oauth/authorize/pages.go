package authorize

import (
	"bytes"
	"html/template"
	"io"
	"net/http"
)

// pageData fills the pages.
type pageData struct {
	Title, Message, Error string
	Client, Username      string
	Scopes                []string
	Flow, Action          string
}

const style = `body{font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem}label{display:block;margin:.8rem 0 .2rem}input[type=text],input[type=password]{width:100%;padding:.4rem;box-sizing:border-box}
button{margin:1rem .5rem 0 0;padding:.5rem 1rem}.error{color:#a00}ul{padding-left:1.2rem}`

var layout = `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{{.Title}}</title><style>` + style + `</style></head><body>`

var (
	loginPage = template.Must(template.New("login").Parse(layout + `<h1>Sign in</h1>
<p><strong>{{.Client}}</strong> asks to act on your behalf{{if .Scopes}} with: {{range $i, $s := .Scopes}}{{if $i}}, {{end}}<code>{{$s}}</code>{{end}}{{end}}.</p>
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
<form method="post" action="{{.Action}}" autocomplete="on">
<input type="hidden" name="flow" value="{{.Flow}}">
<label for="username">User name</label><input type="text" id="username" name="username" value="{{.Username}}" autocomplete="username" required autofocus>
<label for="password">Password</label><input type="password" id="password" name="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form></body></html>`))

	consentPage = template.Must(template.New("consent").Parse(layout + `<h1>Allow access?</h1>
<p>Signed in as <strong>{{.Username}}</strong>.</p>
<p><strong>{{.Client}}</strong> asks to act on your behalf{{if .Scopes}} with:</p><ul>{{range .Scopes}}<li><code>{{.}}</code></li>{{end}}</ul>{{else}}.</p>{{end}}
<form method="post" action="{{.Action}}">
<input type="hidden" name="flow" value="{{.Flow}}">
<button type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form></body></html>`))

	errorPage = template.Must(template.New("error").Parse(layout + `<h1>{{.Title}}</h1><p>{{.Message}}</p></body></html>`))
)

// securityHeaders are on every answer: nothing cached, framed, sniffed or
// loaded from elsewhere, no referrer leaking the code.
func securityHeaders() http.Header {
	h := http.Header{}
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	return h
}

func (a *Authorizer) page(status int, t *template.Template, d pageData) *Response {
	var b bytes.Buffer
	if err := t.Execute(&b, d); err != nil {
		// mutate:equivalent delete-stmt unreachable: the templates are fixed and parsed at init, their data only strings, the writer a bytes.Buffer; Execute does not fail
		a.c.Log.Error("oauth authorize: a page failed", "page", t.Name(), "err", err)
		b.Reset() // mutate:equivalent delete-stmt unreachable, as above
		// mutate:equivalent delete-stmt unreachable, as above
		b.WriteString("authorization page failed\n")
		status = http.StatusInternalServerError // mutate:equivalent delete-stmt unreachable, as above
	}
	h := securityHeaders()
	h.Set("Content-Type", "text/html; charset=utf-8")
	return &Response{Status: status, Header: h, Body: b.Bytes()}
}

// ServeHTTP serves the endpoint with net/http (tests, and whoever mounts it
// on a net/http server).
func (a *Authorizer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body []byte
	if r.Method == http.MethodPost {
		b, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
		if err != nil {
			http.Error(w, "reading the form failed", http.StatusBadRequest)
			return
		}
		body = b
	}
	resp := a.Handle(r.Context(), &Request{Method: r.Method, RawQuery: r.URL.RawQuery, Header: r.Header, Body: body, TLS: r.TLS != nil})
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.Status)
	if r.Method != http.MethodHead {
		w.Write(resp.Body)
	}
}
