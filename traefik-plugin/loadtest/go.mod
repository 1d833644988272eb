// Test tool only: the catalog-style load test of the shim (see main.go). A separate module so
// that the plugin's own go.mod keeps no requirements; it is not part of the plugin's module zip.
module github.com/traefik-oidc-sidecar/traefik-oidc-sidecar/traefik-plugin/loadtest

go 1.22.0

require (
	github.com/mitchellh/mapstructure v1.5.1-0.20231216201459-8508981c8b6c
	github.com/traefik/yaegi v0.16.1
	gopkg.in/yaml.v3 v3.0.1
)

require (
	github.com/BurntSushi/toml v1.4.0 // indirect
	github.com/traefik/paerser v0.2.2
)
