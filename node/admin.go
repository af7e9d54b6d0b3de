package node

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"github.com/adrules/adrules/config"
	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/streams"
	"github.com/adrules/adrules/versions"
)

// maxBody caps admin request bodies: a rules file is kilobytes.
const maxBody = 1 << 20

// admin serves the config API on the node's HTTP port. Reads are open;
// every write, and validate, needs Authorization: Bearer TOKEN, with the
// token from ADRULES_ADMIN_TOKEN; without a configured token, they are
// refused.
type admin struct {
	n     *Node
	token string
	log   *slog.Logger
}

func (a *admin) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/config", a.get)
	mux.HandleFunc("PUT /api/config", a.write(a.put))
	// A dry run changes nothing, but compiles whatever it is sent: as
	// costly as a write, so it needs the token too.
	mux.HandleFunc("POST /api/config/validate", a.write(a.validate))
	mux.HandleFunc("GET /api/config/history", a.history)
	mux.HandleFunc("POST /api/config/learning/reload", a.write(a.reload))
}

type apiError struct {
	Error  string   `json:"error"`
	Errors []string `json:"errors,omitempty"`
}

func reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

// write wraps a handler that changes something (or validates): it checks
// the token in constant time, before reading the body, and caps the body.
func (a *admin) write(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if a.token == "" {
			reply(w, http.StatusForbidden, apiError{Error: "writes are disabled: set ADRULES_ADMIN_TOKEN on the node"})
			return
		}
		if !a.authorized(r) {
			reply(w, http.StatusUnauthorized, apiError{Error: "a valid Authorization: Bearer token is required"})
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		h(w, r)
	}
}

// authorized reports whether r carries the admin token (never, when the
// node has none), compared in constant time.
func (a *admin) authorized(r *http.Request) bool {
	if a.token == "" {
		return false
	}
	scheme, got, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	return ok && strings.EqualFold(scheme, "Bearer") && subtle.ConstantTimeCompare([]byte(got), []byte(a.token)) == 1
}

// capUnauthenticated serves at most n requests without the admin token at
// once; more are answered 503 (Retry-After: 1) before anything else is
// done. Requests with the token, and those of the paths in exempt (the
// probes, which do nothing), are never refused: an operator and a
// supervisor always get through, however many anonymous requests are in
// flight.
func (a *admin) capUnauthenticated(h http.Handler, n int, exempt ...string) http.Handler {
	slots := make(chan struct{}, n)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if slices.Contains(exempt, r.URL.Path) || a.authorized(r) {
			h.ServeHTTP(w, r)
			return
		}
		select {
		case slots <- struct{}{}:
			defer func() { <-slots }()
			h.ServeHTTP(w, r)
		default:
			w.Header().Set("Retry-After", "1")
			reply(w, http.StatusServiceUnavailable, apiError{Error: "too many requests without the admin token at once; try again"})
		}
	})
}

// body reads a rules document from the request.
func body(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	b, err := io.ReadAll(r.Body)
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		reply(w, http.StatusRequestEntityTooLarge, apiError{Error: "the body is larger than 1 MiB"})
		return nil, false
	case err != nil:
		reply(w, http.StatusBadRequest, apiError{Error: err.Error()})
		return nil, false
	}
	return b, true
}

// posted reads the request's document and compiles it, answering the
// request itself when it cannot.
func posted(w http.ResponseWriter, r *http.Request) (*rules.RuleSet, bool) {
	b, ok := body(w, r)
	if !ok {
		return nil, false
	}
	rs, e := compileBody(b)
	if e != nil {
		reply(w, http.StatusUnprocessableEntity, e)
		return nil, false
	}
	return rs, true
}

// compileBody validates and compiles a posted document exactly as
// `adrules check` does a file, with no variables and no overlay.
func compileBody(b []byte) (*rules.RuleSet, *apiError) {
	doc, err := config.Load("body", b, config.Options{})
	if err == nil {
		var rs *rules.RuleSet
		if rs, err = rules.Compile(doc, 0); err == nil {
			return rs, nil
		}
	}
	e := &apiError{Error: "the document is not valid"}
	var list config.Errors
	var one *config.Error
	switch {
	case errors.As(err, &list):
		for _, x := range list {
			e.Errors = append(e.Errors, x.Error())
		}
	case errors.As(err, &one):
		e.Errors = []string{one.Error()}
	default:
		e.Errors = []string{err.Error()}
	}
	return nil, e
}

type configView struct {
	Name     string          `json:"name"`
	Version  int64           `json:"version"`
	SHA256   string          `json:"sha256"`
	Document json.RawMessage `json:"document"`
}

func (a *admin) get(w http.ResponseWriter, _ *http.Request) {
	rs := a.n.RuleSet()
	reply(w, http.StatusOK, configView{Name: rs.Name, Version: rs.Version, SHA256: rs.SHA256, Document: rs.Doc.Canonical()})
}

func (a *admin) validate(w http.ResponseWriter, r *http.Request) {
	rs, ok := posted(w, r)
	if !ok {
		return
	}
	reply(w, http.StatusOK, map[string]any{"valid": true, "name": rs.Name, "sha256": rs.SHA256, "rules": rs.RuleIDs()})
}

// put validates a document and publishes it to the config topic (never to
// a local file); every node, this one included, then switches to it.
func (a *admin) put(w http.ResponseWriter, r *http.Request) {
	rs, ok := posted(w, r)
	if !ok {
		return
	}
	o := a.n.o
	if rs.Name != o.Ruleset {
		reply(w, http.StatusUnprocessableEntity, apiError{Error: "this node runs rule set " + o.Ruleset + ", not " + rs.Name})
		return
	}
	if o.Keys.Signer == nil && !o.Keys.PublishUnsigned {
		reply(w, http.StatusForbidden, apiError{Error: "this node has no signing key (--signing-key): every node would refuse the version it published; publish with adrules config publish --signing-key"})
		return
	}
	// Signed with the node's key (Options.Keys.Signer).
	c, err := streams.PublishDocument(r.Context(), a.n.cluster, o.Keys, rs.Doc, "api", false)
	if err != nil {
		reply(w, http.StatusBadGateway, apiError{Error: "publish: " + err.Error()})
		return
	}
	a.log.Info("rule set published through the admin API", "version", c.Version, "sha256", short(c.SHA256))
	reply(w, http.StatusOK, map[string]any{"published": true, "name": c.Name, "version": c.Version, "sha256": c.SHA256})
}

func (a *admin) history(w http.ResponseWriter, r *http.Request) {
	recs, err := a.n.cluster.ReadAll(r.Context(), a.n.cluster.Topics().ConfigHistory)
	if err != nil {
		reply(w, http.StatusBadGateway, apiError{Error: err.Error()})
		return
	}
	hist, _ := versions.Live(streams.Entries(recs), a.n.o.Ruleset)
	out := []map[string]any{}
	for _, c := range hist {
		out = append(out, map[string]any{"version": c.Version, "sha256": c.SHA256, "author": c.Author, "published_at": c.PublishedAt})
	}
	reply(w, http.StatusOK, out)
}

// reload re-reads the config history and config topics to their ends
// and switches to the version nodes run (versions.Newest, as a starting
// node chooses it), if it replaces the running one: the predecessor's
// reload endpoint, kept.
func (a *admin) reload(w http.ResponseWriter, r *http.Request) {
	if a.n.eng.Load() == nil {
		reply(w, http.StatusServiceUnavailable, apiError{Error: "the node is starting"})
		return
	}
	live, err := streams.ReadLive(r.Context(), a.n.cluster, a.n.o.Ruleset, nil)
	if err != nil {
		reply(w, http.StatusBadGateway, apiError{Error: err.Error()})
		return
	}
	if c, rs, ok := versions.Newest(live, a.n.o.Keys.Accept, nil); ok && a.n.newer(c) {
		a.n.swap(rs)
	}
	rs := a.n.RuleSet()
	reply(w, http.StatusOK, map[string]any{"name": rs.Name, "version": rs.Version, "sha256": rs.SHA256})
}
