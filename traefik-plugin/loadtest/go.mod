// Test tool only: the catalog-style load test of the shim (see main.go). A separate module so
// that the plugin's own go.mod keeps no requirements; it is not part of the plugin's module zip.
module github.com/traefik-oidc-sidecar/traefik-oidc-sidecar/traefik-plugin/loadtest

go 1.22

require (
	github.com/mitchellh/mapstructure v1.5.0
	github.com/traefik/yaegi v0.16.1
	gopkg.in/yaml.v3 v3.0.1
)
