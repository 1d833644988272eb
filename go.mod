// Module root for the Traefik middleware plugin ("shim") in ./traefik-plugin. The shim is
// standard library only: Traefik's Yaegi loader reads no go.mod and resolves no modules, and the
// Plugin Catalog rejects plugins that require traefik, yaegi or mesh.
module github.com/traefik-oidc-sidecar/traefik-oidc-sidecar

go 1.22
