// Package apispec holds the OpenAPI 3 description of the management API
// (api/openapi.yaml, the source of truth kept in the repository) for the
// Admin Node Manager to serve at GET /api/openapi.yaml and
// GET /api/openapi.json. internal/nodemanager/openapi_test.go checks it
// against the server: every route documented, every documented route
// answered.
package apispec

import _ "embed"

// YAML is api/openapi.yaml as it was built into the binary. Callers must not
// modify it.
//
//go:embed openapi.yaml
var YAML []byte
