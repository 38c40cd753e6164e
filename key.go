package m2m

// cacheKey identifies one cached token within a Client: the audience's
// name, its request shape (resource, extra parameters, fixed scopes,
// whether the audience parameter is sent) and the sorted scope set. It is
// comparable: the Client's map key and the single-flight key alike, and
// with the endpoint and client the source of the shared-store key.
type cacheKey struct {
	audience string // Audience.Name
	shape    string // canonical encoding of the request shape; "" for the plain one
	scopes   string // the requested scope set, sorted, space-separated
}
