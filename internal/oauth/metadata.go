package oauth

import (
	"encoding/json"
	"slices"
)

// metadata is the authorization server metadata (RFC 8414 §2): only what
// this server supports.
type metadata struct {
	Issuer                           string   `json:"issuer"`
	AuthorizationEndpoint            string   `json:"authorization_endpoint,omitempty"`
	TokenEndpoint                    string   `json:"token_endpoint"`
	JWKSURI                          string   `json:"jwks_uri,omitempty"`
	ScopesSupported                  []string `json:"scopes_supported,omitempty"`
	ResponseTypesSupported           []string `json:"response_types_supported"`
	GrantTypesSupported              []string `json:"grant_types_supported"`
	TokenEndpointAuthMethods         []string `json:"token_endpoint_auth_methods_supported"`
	TokenEndpointAuthSigningAlgs     []string `json:"token_endpoint_auth_signing_alg_values_supported"`
	IntrospectionEndpoint            string   `json:"introspection_endpoint"`
	IntrospectionEndpointAuthMethods []string `json:"introspection_endpoint_auth_methods_supported"`
	IntrospectionEndpointAuthAlgs    []string `json:"introspection_endpoint_auth_signing_alg_values_supported"`
	RevocationEndpoint               string   `json:"revocation_endpoint"`
	RevocationEndpointAuthMethods    []string `json:"revocation_endpoint_auth_methods_supported"`
	RevocationEndpointAuthAlgs       []string `json:"revocation_endpoint_auth_signing_alg_values_supported"`
	CodeChallengeMethodsSupported    []string `json:"code_challenge_methods_supported"`
}

func (s *Server) buildMetadata() []byte {
	algs := make([]string, len(assertionAlgs))
	for i, a := range assertionAlgs {
		algs[i] = string(a)
	}
	auth := []string{AuthSecretBasic, AuthSecretPost, AuthPrivateKey}
	m := metadata{
		Issuer:                           s.cfg.Issuer,
		TokenEndpoint:                    s.tokenURL,
		ScopesSupported:                  slices.Clone(s.cfg.Scopes),
		ResponseTypesSupported:           []string{},
		GrantTypesSupported:              []string{GrantClientCredentials, GrantRefreshToken},
		TokenEndpointAuthMethods:         append(slices.Clone(auth), AuthNone),
		TokenEndpointAuthSigningAlgs:     algs,
		IntrospectionEndpoint:            s.introspectURL,
		IntrospectionEndpointAuthMethods: auth,
		IntrospectionEndpointAuthAlgs:    algs,
		RevocationEndpoint:               s.revokeURL,
		RevocationEndpointAuthMethods:    append(slices.Clone(auth), AuthNone),
		RevocationEndpointAuthAlgs:       algs,
		CodeChallengeMethodsSupported:    []string{"S256"},
	}
	if s.authorize != nil {
		// Codes come only from the authorization endpoint.
		m.AuthorizationEndpoint = s.authorizeURL
		m.ResponseTypesSupported = []string{"code"}
		m.GrantTypesSupported = []string{GrantAuthorizationCode, GrantClientCredentials, GrantRefreshToken}
	}
	if s.keys != nil {
		m.JWKSURI = s.jwksURL
	}
	b, _ := json.Marshal(m)
	return b
}
