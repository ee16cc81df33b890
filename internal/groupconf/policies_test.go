package groupconf

import (
	"strings"
	"testing"
)

// policyConfig is a group configuration whose API "a" (methods GET, POST)
// has the policies given as YAML lines under "policies:" (indented six).
func policyConfig(policies string) Layer {
	return Layer{Name: "g.yaml", YAML: []byte("backends:\n  - name: b\n    url: http://127.0.0.1:1\napis:\n  - name: a\n    pathPrefix: /a\n    methods: [GET, POST]\n    backend: b\n    policies:\n" + policies)}
}

// TestPolicyErrors: each wrong policy is refused naming the file, the
// line where it is (line 10 is the first policy's) and the key.
func TestPolicyErrors(t *testing.T) {
	cases := []struct {
		name, yaml string
		want       []string
	}{
		{"unknown type", "      - apikey: {}\n", []string{"g.yaml:10", `unknown key "apikey"`, "accepted under apis[0].policies[0]: apiKey, jwt, lookup, cors, oauth, headers, responseCache, cacheLookup, cacheStore", `did you mean "apiKey"`}},
		{"apiKey header not a field name", "      - apiKey: {header: \"Key Id\"}\n", []string{"apis[0].policies[0].apiKey.header", `"Key Id" is not a field name`}},
		{"apiKey header the gateway's", "      - apiKey: {applicationIdHeader: X-Forwarded-For}\n", []string{"apiKey.applicationIdHeader", "gateway's own field"}},
		{"apiKey headers the same", "      - apiKey: {header: X-Gatehouse-Application-Name}\n", []string{"three different fields"}},
		{"apiKey query with =", "      - apiKey: {query: \"a=b\"}\n", []string{"apiKey.query", "not a plain query parameter name"}},
		{"apiKey unknown key", "      - apiKey: {headr: X}\n", []string{"g.yaml:10", `did you mean "header"`}},
		{"two types in one item", "      - cors: {origins: [\"*\"]}\n        headers: {}\n", []string{"g.yaml:10", "apis[0].policies[0]", "exactly one key"}},
		{"empty item", "      - {}\n", []string{"g.yaml:10", "exactly one key"}},
		{"unknown cors key", "      - cors: {origins: [\"*\"], maxage: 5m}\n", []string{"g.yaml:10", `unknown key "maxage"`, `did you mean "maxAge"`}},
		{"no origins", "      - cors: {credentials: false}\n", []string{"apis[0].policies[0].cors.origins", "give the origins"}},
		{"star with credentials", "      - cors: {origins: [\"*\"], credentials: true}\n", []string{"g.yaml:10", "credentials: true is refused"}},
		{"star among others", "      - cors: {origins: [\"*\", \"https://a.example\"]}\n", []string{"give it alone"}},
		{"origin with a path", "      - cors: {origins: [\"https://a.example/app\"]}\n", []string{"nothing after it"}},
		{"origin with a slash", "      - cors: {origins: [\"https://a.example/\"]}\n", []string{"nothing after it"}},
		{"origin in upper case", "      - cors: {origins: [\"https://A.example\"]}\n", []string{"lower case"}},
		{"origin without scheme", "      - cors: {origins: [\"a.example\"]}\n", []string{"http:// or https://"}},
		{"origin ftp", "      - cors: {origins: [\"ftp://a.example\"]}\n", []string{"http:// or https://"}},
		{"method not the API's", "      - cors: {origins: [\"*\"], methods: [DELETE]}\n", []string{`"DELETE" is not one of the API's methods (GET, POST)`}},
		{"not a method", "      - cors: {origins: [\"*\"], methods: [get]}\n", []string{`"get" is not a method`}},
		{"bad field", "      - cors: {origins: [\"*\"], headers: [\"Key Id\"]}\n", []string{`"Key Id" is not a field name`}},
		{"bad expose field", "      - cors: {origins: [\"*\"], exposeHeaders: [\"X:Y\"]}\n", []string{`"X:Y" is not a field name`}},
		{"max age too long", "      - cors: {origins: [\"*\"], maxAge: 25h}\n", []string{"maxAge", "want 0 to 24h"}},
		{"max age negative", "      - cors: {origins: [\"*\"], maxAge: -1s}\n", []string{"g.yaml:10", "is negative"}},
		{"unknown headers key", "      - headers: {request: {add: {X: y}}}\n", []string{"g.yaml:10", `unknown key "add"`, "set, remove"}},
		{"set Host", "      - headers: {request: {set: {host: evil}}}\n", []string{`"host" is the gateway's own field`}},
		{"remove X-Forwarded-For", "      - headers: {request: {remove: [X-Forwarded-For]}}\n", []string{"gateway's own field"}},
		{"set Content-Length", "      - headers: {response: {set: {Content-Length: \"0\"}}}\n", []string{"gateway's own field"}},
		{"set the correlation id", "      - headers: {response: {set: {X-CorrelationID: x}}}\n", []string{"gateway's own field"}},
		{"value with a line break", "      - headers: {response: {set: {X-A: \"a\\r\\nX-B: b\"}}}\n", []string{"one line"}},
		{"value with spaces around", "      - headers: {response: {set: {X-A: \" a\"}}}\n", []string{"without leading or trailing spaces"}},
		{"bad name", "      - headers: {request: {remove: [\"a b\"]}}\n", []string{`"a b" is not a field name`}},
		{"long value", "      - headers: {request: {set: {X-A: " + strings.Repeat("a", 8<<10+1) + "}}}\n", []string{"at most 8 KiB"}},
		{"jwt without issuer", "      - jwt: {audience: orders, jwksUrl: \"https://id.example/jwks\"}\n", []string{"g.yaml:10", "apis[0].policies[0].jwt: issuer: give the issuer"}},
		{"jwt http issuer", "      - jwt: {issuer: \"http://id.example\", audience: a, discovery: true}\n", []string{"jwt.issuer", "http:// is refused"}},
		{"jwt http issuer not loopback", "      - jwt: {issuer: \"http://id.example\", audience: a, discovery: true, allowHttp: true}\n", []string{"jwt.issuer", "loopback host only"}},
		{"jwt issuer with a query", "      - jwt: {issuer: \"https://id.example/?a=1\", audience: a, discovery: true}\n", []string{"jwt.issuer", "without user, query or fragment"}},
		{"jwt without audience", "      - jwt: {issuer: \"https://id.example\", discovery: true}\n", []string{"g.yaml:10", "audience: give the audience"}},
		{"jwt without keys", "      - jwt: {issuer: \"https://id.example\", audience: a}\n", []string{"g.yaml:10", "give jwksUrl", "discovery: true"}},
		{"jwt both key sources", "      - jwt: {issuer: \"https://id.example\", audience: a, discovery: true, jwksUrl: \"https://id.example/k\"}\n", []string{"jwt.jwksUrl", "not both"}},
		{"jwt http jwks", "      - jwt: {issuer: \"https://id.example\", audience: a, jwksUrl: \"http://id.example/k\"}\n", []string{"jwt.jwksUrl", "http:// is refused"}},
		{"jwt alg none", "      - jwt: {issuer: \"https://id.example\", audience: a, discovery: true, algorithms: [RS256, none]}\n", []string{"jwt.algorithms", `"none" is refused`}},
		{"jwt alg HMAC", "      - jwt: {issuer: \"https://id.example\", audience: a, discovery: true, algorithms: [HS256]}\n", []string{"jwt.algorithms", `"HS256" is refused`, "HMAC"}},
		{"jwt alg unknown", "      - jwt: {issuer: \"https://id.example\", audience: a, discovery: true, algorithms: [rs256]}\n", []string{"jwt.algorithms", `"rs256" is not an algorithm`, "RS256"}},
		{"jwt alg twice", "      - jwt: {issuer: \"https://id.example\", audience: a, discovery: true, algorithms: [ES256, ES256]}\n", []string{"listed twice"}},
		{"jwt leeway too long", "      - jwt: {issuer: \"https://id.example\", audience: a, discovery: true, leeway: 6m}\n", []string{"jwt.leeway", "want 0 to 5m"}},
		{"jwt keys ttl too short", "      - jwt: {issuer: \"https://id.example\", audience: a, discovery: true, keysTtl: 10s}\n", []string{"jwt.keysTtl", "want 1m to 24h"}},
		{"jwt refetch too short", "      - jwt: {issuer: \"https://id.example\", audience: a, discovery: true, refetchInterval: 100ms}\n", []string{"jwt.refetchInterval", "want 1s to 1h"}},
		{"jwt token too long", "      - jwt: {issuer: \"https://id.example\", audience: a, discovery: true, maxTokenBytes: 100000}\n", []string{"jwt.maxTokenBytes"}},
		{"jwt bad scope", "      - jwt: {issuer: \"https://id.example\", audience: a, discovery: true, scopes: [\"a b\"]}\n", []string{"jwt.scopes", `"a b" is not a scope`}},
		{"jwt bad method", "      - jwt: {issuer: \"https://id.example\", audience: a, discovery: true, methodScopes: {get: [x]}}\n", []string{"jwt.methodScopes", `"get" is not a method`}},
		{"jwt bad header", "      - jwt: {issuer: \"https://id.example\", audience: a, discovery: true, subjectHeader: \"X Sub\"}\n", []string{"jwt.subjectHeader", "not a field name"}},
		{"jwt header Authorization", "      - jwt: {issuer: \"https://id.example\", audience: a, discovery: true, clientIdHeader: authorization}\n", []string{"jwt.clientIdHeader", "carries the token"}},
		{"jwt header the gateway's", "      - jwt: {issuer: \"https://id.example\", audience: a, discovery: true, clientIdHeader: X-Forwarded-For}\n", []string{"gateway's own field"}},
		{"jwt same headers", "      - jwt: {issuer: \"https://id.example\", audience: a, discovery: true, clientIdHeader: X-Gatehouse-Subject}\n", []string{"two different fields"}},
		{"jwt realm with a quote", "      - jwt: {issuer: \"https://id.example\", audience: a, discovery: true, realm: \"a\\\"b\"}\n", []string{"jwt.realm"}},
		{"jwt bad type", "      - jwt: {issuer: \"https://id.example\", audience: a, discovery: true, types: [\"at+jwt, JWT\"]}\n", []string{"jwt.types", "not a media type name"}},
		{"jwt unknown key", "      - jwt: {issuer: \"https://id.example\", audience: a, discovery: true, audiences: [b]}\n", []string{"g.yaml:10", `unknown key "audiences"`, `did you mean "audience"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(policyConfig(tc.yaml))
			if err == nil {
				t.Fatalf("got no error, want one containing %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

// TestPoliciesLoad: valid policies load in their order, and a cors policy
// adds OPTIONS to the API's route (not to its own methods).
func TestPoliciesLoad(t *testing.T) {
	cfg, err := Load(policyConfig("      - headers: {request: {set: {X-A: \"1\"}, remove: [X-B]}, response: {remove: [Server]}}\n" +
		"      - cors: {origins: [\"https://a.example\", \"http://localhost:3000\"], methods: [GET], maxAge: 24h, credentials: true}\n"))
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.APIs[0]
	if len(a.Policies) != 2 || a.Policies[0].Type() != "headers" || a.Policies[1].Type() != "cors" {
		t.Fatalf("policies: %+v", a.Policies)
	}
	if a.Policies[0].Headers.Request.Set["X-A"] != "1" || a.Policies[1].CORS.Origins[1] != "http://localhost:3000" {
		t.Errorf("settings: %+v %+v", a.Policies[0].Headers, a.Policies[1].CORS)
	}
	if got := strings.Join(a.RouteMethods(), ","); got != "GET,POST,OPTIONS" {
		t.Errorf("route methods: %s", got)
	}
	if got := strings.Join(a.Methods, ","); got != "GET,POST" {
		t.Errorf("the API's own methods changed: %s", got)
	}
	for _, tc := range []struct {
		methods []string
		cors    bool
		want    string
	}{
		{nil, true, ""},
		{[]string{"GET", "OPTIONS"}, true, "GET,OPTIONS"},
		{[]string{"GET"}, false, "GET"},
	} {
		api := API{Methods: tc.methods}
		if tc.cors {
			api.Policies = []Policy{{CORS: &CORSPolicy{}}}
		}
		if got := strings.Join(api.RouteMethods(), ","); got != tc.want {
			t.Errorf("RouteMethods(%v, cors %v): got %q, want %q", tc.methods, tc.cors, got, tc.want)
		}
	}
	if got := strings.Join(PolicyTypes(), ","); got != "apiKey,jwt,lookup,cors,oauth,headers,responseCache,cacheLookup,cacheStore,rateLimit" {
		t.Errorf("PolicyTypes: %s", got)
	}
}

// lookupConfig is a configuration with a custom table "customers" and an
// API "a" on path /a/{customer} with the given policies.
func lookupConfig(tables, policies string) Layer {
	if tables == "" {
		tables = "    - {collection: C, name: Customers, alias: customers, primaryKey: id, secondaryKey: email, properties: [{name: id, type: string}, {name: email, type: string}, {name: tier, type: string}]}\n"
	}
	return Layer{Name: "g.yaml", YAML: []byte("kps:\n  tables:\n" + tables + "backends:\n  - name: b\n    url: http://127.0.0.1:1\napis:\n  - name: a\n    path: /a/{customer}\n    backend: b\n    policies:\n" + policies)}
}

func TestLookupAndVariableErrors(t *testing.T) {
	cases := []struct {
		name, tables, policies string
		want                   []string
	}{
		{"unknown table", "", "      - lookup: {table: nope, key: \"param:customer\", as: c}\n", []string{`"nope" is not a table of kps.tables (defined: customers)`}},
		{"bad key source", "", "      - lookup: {table: customers, key: \"cookie:x\", as: c}\n", []string{"want header:NAME, query:NAME, param:NAME or application"}},
		{"key without name", "", "      - lookup: {table: customers, key: \"header:\", as: c}\n", []string{"want header:NAME"}},
		{"bad header name", "", "      - lookup: {table: customers, key: \"header:a b\", as: c}\n", []string{`"a b" is not a field name`}},
		{"bad query name", "", "      - lookup: {table: customers, key: \"query:a=b\", as: c}\n", []string{"not a plain query parameter name"}},
		{"param not in the path", "", "      - lookup: {table: customers, key: \"param:id\", as: c}\n", []string{"has no {id} segment"}},
		{"application without apiKey", "", "      - lookup: {table: customers, key: application, as: c}\n", []string{"application needs an apiKey, jwt or oauth policy before this lookup"}},
		{"by secondary without one", "    - {collection: C, name: T, alias: customers, primaryKey: id, properties: [{name: id, type: string}]}\n", "      - lookup: {table: customers, key: \"param:customer\", by: secondary, as: c}\n", []string{"has no secondary key"}},
		{"bad by", "", "      - lookup: {table: customers, key: \"param:customer\", by: third, as: c}\n", []string{`"third": want primary or secondary`}},
		{"bad as", "", "      - lookup: {table: customers, key: \"param:customer\", as: \"c.d\"}\n", []string{"want a name of letters"}},
		{"as application", "", "      - lookup: {table: customers, key: \"param:customer\", as: application}\n", []string{"(not application)"}},
		{"as twice", "", "      - lookup: {table: customers, key: \"param:customer\", as: c}\n      - lookup: {table: customers, key: \"header:X-C\", as: c}\n", []string{"name of an earlier lookup"}},
		{"bad status", "", "      - lookup: {table: customers, key: \"param:customer\", as: c, notFoundStatus: 401}\n", []string{"401: want 403 or 404"}},
		{"variable not given", "", "      - headers: {request: {set: {X-T: \"${c.tier}\"}}}\n      - lookup: {table: customers, key: \"param:customer\", as: c}\n", []string{"uses ${c.tier}, which no earlier policy of this API gives"}},
		{"unknown property", "", "      - lookup: {table: customers, key: \"param:customer\", as: c}\n      - headers: {request: {set: {X-T: \"${c.plan}\"}}}\n", []string{"${c.plan}"}},
		{"application without apiKey in a value", "", "      - headers: {response: {set: {X-A: \"${application.id}\"}}}\n", []string{"${application.id}"}},
		{"unclosed variable", "", "      - headers: {request: {set: {X-T: \"${c.tier\"}}}\n", []string{`without "}"`}},
		{"variable without property", "", "      - headers: {request: {set: {X-T: \"${tier}\"}}}\n", []string{"a variable is NAME.PROPERTY"}},
		{"reserved alias", "    - {collection: C, name: T, alias: apikeys, primaryKey: id, properties: [{name: id, type: string}]}\n", "      - headers: {}\n", []string{`"apikeys" is a table of Gatehouse's own`}},
		{"alias twice", "    - {collection: C, name: T, alias: t, primaryKey: id, properties: [{name: id, type: string}]}\n    - {collection: C, name: U, alias: t, primaryKey: id, properties: [{name: id, type: string}]}\n", "      - headers: {}\n", []string{`"t" is defined twice`}},
		{"bad table", "    - {collection: C, name: T, alias: t, primaryKey: nope, properties: [{name: id, type: string}]}\n", "      - headers: {}\n", []string{"kps.tables[0]", `primary key "nope" is not a property`}},
		{"bad property type", "    - {collection: C, name: T, alias: t, primaryKey: id, properties: [{name: id, type: text}]}\n", "      - headers: {}\n", []string{`type "text"`}},
		{"unknown table key", "    - {collection: C, name: T, alias: t, primarykey: id, properties: [{name: id, type: string}]}\n", "      - headers: {}\n", []string{"g.yaml:3", `did you mean "primaryKey"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(lookupConfig(tc.tables, tc.policies))
			if err == nil {
				t.Fatalf("got no error, want one containing %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got %q, want it to contain %q", err, w)
				}
			}
		})
	}
	// Valid: variables after their policies, $$ kept, a secondary lookup.
	cfg, err := Load(lookupConfig("", "      - apiKey: {}\n      - lookup: {table: customers, key: \"header:X-Email\", by: secondary, as: c, required: true, notFoundStatus: 404}\n"+
		"      - headers: {request: {set: {X-T: \"tier ${c.tier} for ${application.name} costs $$5\"}}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.KPS.KPSTables(); len(got) != 1 || got[0].Alias != "customers" || got[0].SecondaryKey != "email" || got[0].Properties[2].Name != "tier" {
		t.Errorf("KPSTables: %+v", got)
	}
}

func TestParseTemplate(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []TemplatePart
	}{
		{"plain", []TemplatePart{{Lit: "plain"}}},
		{"", nil},
		{"${a.b}", []TemplatePart{{Var: "a.b"}}},
		{"x ${a.b}-${c.d_e} y", []TemplatePart{{Lit: "x "}, {Var: "a.b"}, {Lit: "-"}, {Var: "c.d_e"}, {Lit: " y"}}},
		{"$$ and $x and $", []TemplatePart{{Lit: "$ and $x and $"}}},
		{"$${a.b}", []TemplatePart{{Lit: "${a.b}"}}},
		{"${a.b.c}", []TemplatePart{{Var: "a.b.c"}}},
	} {
		got, err := ParseTemplate(c.in)
		if err != nil || len(got) != len(c.want) {
			t.Errorf("ParseTemplate(%q): %v %v, want %v", c.in, got, err, c.want)
			continue
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("ParseTemplate(%q)[%d]: %v, want %v", c.in, i, got[i], c.want[i])
			}
		}
	}
	for _, bad := range []string{"${", "${a.b", "${}", "${a}", "${.b}", "${a.}", "${1a.b}", "${a b.c}"} {
		if _, err := ParseTemplate(bad); err == nil {
			t.Errorf("ParseTemplate(%q): no error", bad)
		}
	}
}

func TestParseLookupKey(t *testing.T) {
	for in, want := range map[string]LookupKey{"application": {From: "application"}, "header:X-A": {"header", "X-A"}, "query:q": {"query", "q"}, "param:id": {"param", "id"}} {
		if got, err := ParseLookupKey(in); err != nil || got != want {
			t.Errorf("ParseLookupKey(%q): %v %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "app", "header", "param:1a", "param:a-b", "query:" + strings.Repeat("q", 65), "Header:X"} {
		if _, err := ParseLookupKey(bad); err == nil {
			t.Errorf("ParseLookupKey(%q): no error", bad)
		}
	}
}

// TestJWTPolicyLoad: a jwt policy loads with its defaults, loopback http
// is accepted with allowHttp, and its variables can be used by a later
// headers policy.
func TestJWTPolicyLoad(t *testing.T) {
	cfg, err := Load(policyConfig("      - jwt: {issuer: \"http://127.0.0.1:8080/realms/a\", audience: orders, discovery: true, allowHttp: true, methodScopes: {POST: [orders:write]}}\n" +
		"      - headers: {request: {set: {X-User: \"${jwt.sub}\", X-Client: \"${jwt.clientId}\"}}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.APIs[0].Policies[0]
	if p.Type() != "jwt" {
		t.Fatalf("type: %q", p.Type())
	}
	d := p.JWT.WithDefaults()
	if strings.Join(d.Algorithms, ",") != "RS256,ES256" || d.Leeway.D() != DefaultJWTLeeway || d.SubjectHeader != "X-Gatehouse-Subject" ||
		d.ClientIDHeader != "X-Gatehouse-Client-Id" || d.MaxTokenBytes != 8192 || d.Realm != "gatehouse" || d.RefetchInterval.D() != DefaultJWTRefetchInterval {
		t.Errorf("defaults: %+v", d)
	}
	if _, err := Load(policyConfig("      - headers: {request: {set: {X-User: \"${jwt.sub}\"}}}\n")); err == nil || !strings.Contains(err.Error(), "${jwt.sub}") {
		t.Errorf("${jwt.sub} without a jwt policy: %v", err)
	}
}
