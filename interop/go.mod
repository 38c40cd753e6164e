// Module interop holds the tests against a real Ory Hydra. It is a module
// of its own so that SDK users never download what these tests need.
module github.com/m2mauth/m2m/interop

go 1.26.0

require (
	github.com/m2mauth/m2m v0.0.0
	github.com/stretchr/testify v1.12.1
)

require (
	go.yaml.in/yaml/v3 v3.0.5 // indirect
	golang.org/x/oauth2 v0.38.0 // indirect
	golang.org/x/sync v0.25.0 // indirect
	golang.org/x/time v0.16.0 // indirect
)

replace github.com/m2mauth/m2m => ../
