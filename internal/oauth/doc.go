// Package oauth is the token side of a group's OAuth 2.0 authorization
// server (issue 18): the token endpoint (client_credentials,
// authorization_code with PKCE S256, refresh_token with rotation and reuse
// detection), token introspection (RFC 7662), revocation (RFC 7009), the
// authorization server metadata (RFC 8414) and the JWKS document, and Verify
// for the oauth policy. Access tokens are opaque (random, stored only as a
// keyed hash in the KPS) or JWTs (RFC 9068) signed with a rotating key set.
//
// The server is transport-neutral: Handle takes a Request and returns a
// Response, so that the gateway's own HTTP/1.1 engine can call it;
// HTTPHandler adapts it to net/http.
//
// Not built here (see docs/oauth.md): the authorization endpoint with its
// login and consent pages (IssueCode is its seam), the oauth and jwt
// policies, the wiring into the instance and the group configuration, and
// the management API and CLI.
//
// Everything is safe for concurrent use unless its comment says otherwise.
package oauth
