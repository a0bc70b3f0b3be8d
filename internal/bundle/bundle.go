// Package bundle is the verifier bundle: one document per TokenPolicy holding the policy,
// the public keys it trusts and the revocations in its scope, written by the operator into
// a ConfigMap and read by the verifier sidecar and the token service as one atomic unit.
//
// The wire format is documented in docs/bundle-format.md. In short:
//
//	{"format":"keyward.dev/bundle/v1","generation":7,"hash":"sha256:<hex>","content":{...}}
//
// where hash is the SHA-256 of the exact bytes of the "content" member value, so any
// reader can check integrity without canonicalising JSON. Decode fails closed: a
// document that is not exactly right is refused as a whole.
package bundle

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/keyward-dev/keyward/internal/jwks"
)

const (
	// Format identifies version 1 of the bundle document.
	Format = "keyward.dev/bundle/v1"
	// DataKey is the ConfigMap data key that holds the bundle document.
	DataKey = "bundle.json"
	// MaxBytes is the largest bundle the operator writes: the ConfigMap limit is 1 MiB
	// for the whole object, and this leaves room for metadata. Decode refuses more.
	MaxBytes = 900 << 10
)

// Bundle is a decoded bundle document.
type Bundle struct {
	// Generation increases by one each time the content of the policy's bundle changes.
	Generation int64
	// Hash is "sha256:<hex>" of the content bytes.
	Hash string
	// Content is the policy, keys and revocations.
	Content Content
	// Keys are the parsed public keys of Content.JWKS, in document order.
	Keys []jwk.Key
}

// Content is the hashed part of a bundle.
type Content struct {
	Policy      Policy          `json:"policy"`
	JWKS        json.RawMessage `json:"jwks"`
	Revocations Revocations     `json:"revocations"`
}

// Policy is the verifier's view of a TokenPolicy, with every default applied.
type Policy struct {
	Namespace             string        `json:"namespace"`
	Name                  string        `json:"name"`
	Issuer                string        `json:"issuer"`
	Audiences             []string      `json:"audiences"`
	Algorithms            []string      `json:"algorithms"`
	LeewaySeconds         int64         `json:"leewaySeconds"`
	AccessTokenType       string        `json:"accessTokenType"`
	AccessTokenTTLSeconds int64         `json:"accessTokenTTLSeconds"`
	SigningKeyID          string        `json:"signingKeyID,omitempty"`
	Binding               Binding       `json:"binding"`
	Routes                []Route       `json:"routes,omitempty"`
	ForwardClaims         []ClaimHeader `json:"forwardClaims,omitempty"`
	TokenSources          []TokenSource `json:"tokenSources"`
	ForwardToken          bool          `json:"forwardToken,omitempty"`
}

// Binding is the proof-of-possession requirement.
type Binding struct {
	Mode     string `json:"mode"` // None, DPoP, MTLS
	Required bool   `json:"required,omitempty"`
}

// Route maps a path and methods to required scopes.
type Route struct {
	Path      string   `json:"path"`
	Methods   []string `json:"methods,omitempty"`
	Scopes    []string `json:"scopes,omitempty"`
	Anonymous bool     `json:"anonymous,omitempty"`
}

// ClaimHeader forwards a claim as a header.
type ClaimHeader struct {
	Claim  string `json:"claim"`
	Header string `json:"header"`
}

// TokenSource is where a token may be presented.
type TokenSource struct {
	Type string `json:"type"` // AuthorizationHeader, Cookie
	Name string `json:"name,omitempty"`
}

// Revocations lists revoked token attributes by claim.
type Revocations struct {
	JTI      []Revoked `json:"jti,omitempty"`
	Subject  []Revoked `json:"sub,omitempty"`
	Session  []Revoked `json:"sid,omitempty"`
	KeyID    []Revoked `json:"kid,omitempty"`
	ClientID []Revoked `json:"client_id,omitempty"`
}

// Revoked is one revoked value.
type Revoked struct {
	// Value is the claim value (jti, sub, sid, kid or client_id).
	Value string `json:"v"`
	// IssuedBefore (unix seconds), for sub and client_id: tokens with iat before it are
	// revoked. 0 means every token with the value.
	IssuedBefore int64 `json:"b,omitempty"`
	// Expires (unix seconds) is when every token the entry can match has expired.
	Expires int64 `json:"x"`
}

// Len is the number of revoked values.
func (r *Revocations) Len() int {
	return len(r.JTI) + len(r.Subject) + len(r.Session) + len(r.KeyID) + len(r.ClientID)
}

// Normalize sorts every list and merges duplicate values (keeping the widest
// IssuedBefore and the latest Expires), so equal sets encode to equal bytes.
func (r *Revocations) Normalize() {
	for _, l := range []*[]Revoked{&r.JTI, &r.Subject, &r.Session, &r.KeyID, &r.ClientID} {
		*l = normalize(*l)
	}
}

func normalize(l []Revoked) []Revoked {
	if len(l) == 0 {
		return nil
	}
	slices.SortFunc(l, func(a, b Revoked) int { return strings.Compare(a.Value, b.Value) })
	out := l[:1]
	for _, e := range l[1:] {
		last := &out[len(out)-1]
		if e.Value != last.Value {
			out = append(out, e)
			continue
		}
		if last.IssuedBefore != 0 && (e.IssuedBefore == 0 || e.IssuedBefore > last.IssuedBefore) {
			last.IssuedBefore = e.IssuedBefore
		}
		last.Expires = max(last.Expires, e.Expires)
	}
	return out
}

type envelope struct {
	Format     string          `json:"format"`
	Generation int64           `json:"generation"`
	Hash       string          `json:"hash"`
	Content    json.RawMessage `json:"content"`
}

// EncodeContent renders the content and returns its bytes and hash. The JWKS member is
// kept byte for byte (it must already be compact, as jwks.PublicSetJSON renders it).
func EncodeContent(c Content) ([]byte, string, error) {
	// Normalize sorts and merges in place: work on copies, not on the caller's lists.
	r := &c.Revocations
	for _, l := range []*[]Revoked{&r.JTI, &r.Subject, &r.Session, &r.KeyID, &r.ClientID} {
		*l = slices.Clone(*l)
	}
	r.Normalize()
	raw, err := json.Marshal(c)
	if err != nil {
		return nil, "", fmt.Errorf("encoding bundle content: %w", err)
	}
	return raw, contentHash(raw), nil
}

// Encode wraps rendered content (from EncodeContent) into a bundle document. The content
// is embedded byte for byte, so the hash stays the hash of the content member's bytes; it
// must be a JSON object without surrounding whitespace, and hash must be its hash.
func Encode(generation int64, content []byte, hash string) ([]byte, error) {
	if generation < 1 {
		return nil, errors.New("bundle generation must be at least 1")
	}
	if len(content) < 2 || content[0] != '{' || content[len(content)-1] != '}' || !json.Valid(content) {
		return nil, errors.New("bundle content must be a JSON object without surrounding whitespace")
	}
	if hash != contentHash(content) {
		return nil, errors.New("bundle hash does not match its content")
	}
	// The bytes json.Marshal(envelope{...}) writes for compact content, without re-encoding
	// the content (json.Marshal would compact and re-escape it, changing its hash).
	doc := make([]byte, 0, len(content)+len(hash)+64)
	doc = append(doc, `{"format":"`+Format+`","generation":`...)
	doc = strconv.AppendInt(doc, generation, 10)
	doc = append(doc, `,"hash":"`...)
	doc = append(doc, hash...)
	doc = append(doc, `","content":`...)
	doc = append(doc, content...)
	return append(doc, '}'), nil
}

func contentHash(content []byte) string {
	sum := sha256.Sum256(content)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Decode parses and checks a bundle document. It fails closed: wrong format, size,
// duplicate, unknown, missing or null members, member names that differ from the format's
// in case, a hash mismatch, an invalid policy or key set, or a malformed revocation makes
// the whole bundle invalid.
func Decode(data []byte) (*Bundle, error) {
	if len(data) > MaxBytes {
		return nil, fmt.Errorf("bundle is %d bytes, more than the %d allowed", len(data), MaxBytes)
	}
	return decode(data)
}

// decode is Decode without the size limit (benchmarks use it on larger documents).
func decode(data []byte) (*Bundle, error) {
	if err := checkJSON(data); err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	// Member names are matched exactly (encoding/json alone would accept "FORMAT" for
	// "format"), required members must be present, and null is refused everywhere but
	// inside the JWK Set, which jwks.ParseSet checks itself.
	w := walker{data: data}
	w.skipSpace()
	if err := w.value(envelopeSchema); err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	var env envelope
	for i, dst := range []any{&env.Format, &env.Generation, &env.Hash} {
		if err := json.Unmarshal(w.top[i], dst); err != nil {
			return nil, fmt.Errorf("bundle: member %q: %w", envelopeSchema.fields[i].name, err)
		}
	}
	env.Content = w.top[3]
	if env.Format != Format {
		return nil, fmt.Errorf("bundle format %q is not %q", env.Format, Format)
	}
	if env.Generation < 1 {
		return nil, fmt.Errorf("bundle generation %d is not positive", env.Generation)
	}
	if len(env.Content) == 0 {
		return nil, errors.New("bundle has no content")
	}
	if env.Hash != contentHash(env.Content) {
		return nil, errors.New("bundle hash does not match its content")
	}
	b := &Bundle{Generation: env.Generation, Hash: env.Hash}
	if err := strictUnmarshal(env.Content, &b.Content); err != nil {
		return nil, fmt.Errorf("bundle content: %w", err)
	}
	if err := b.Content.Policy.validate(); err != nil {
		return nil, fmt.Errorf("bundle policy: %w", err)
	}
	keys, err := jwks.ParseSet(b.Content.JWKS, false)
	if err != nil {
		return nil, fmt.Errorf("bundle jwks: %w", err)
	}
	b.Keys = keys
	if err := b.Content.Revocations.validate(); err != nil {
		return nil, fmt.Errorf("bundle revocations: %w", err)
	}
	return b, nil
}

// checkJSON returns nil when data is exactly one well-formed UTF-8 JSON value, and an
// error wrapping jwks.ErrInvalidJSON that never quotes the document otherwise.
func checkJSON(data []byte) error {
	if !utf8.Valid(data) {
		return fmt.Errorf("%w: not valid UTF-8", jwks.ErrInvalidJSON)
	}
	if json.Valid(data) {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	var v json.RawMessage
	err := dec.Decode(&v)
	var se *json.SyntaxError
	switch {
	case err == nil:
		return fmt.Errorf("%w: trailing data after the top-level value at byte offset %d", jwks.ErrInvalidJSON, dec.InputOffset())
	case errors.Is(err, io.EOF):
		return fmt.Errorf("%w: empty document", jwks.ErrInvalidJSON)
	case errors.As(err, &se):
		return fmt.Errorf("%w: syntax error at byte offset %d", jwks.ErrInvalidJSON, se.Offset)
	default:
		return fmt.Errorf("%w: unexpected end of document", jwks.ErrInvalidJSON)
	}
}

func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON document")
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); err == nil {
		return errors.New("trailing data after the JSON document")
	}
	return nil
}

var (
	validModes   = []string{"None", "DPoP", "MTLS"}
	validSources = []string{"AuthorizationHeader", "Cookie"}
	validTypes   = []string{"at+jwt", "JWT"}
)

func (p *Policy) validate() error {
	switch {
	case p.Issuer == "":
		return errors.New("issuer is empty")
	case len(p.Audiences) == 0 || slices.Contains(p.Audiences, ""):
		return errors.New("audiences are missing or empty")
	case len(p.Algorithms) == 0:
		return errors.New("no algorithm is allowed")
	case p.LeewaySeconds < 0 || p.LeewaySeconds > 300:
		return fmt.Errorf("leewaySeconds %d is outside 0..300", p.LeewaySeconds)
	case !slices.Contains(validTypes, p.AccessTokenType):
		return fmt.Errorf("accessTokenType %q is not one of %v", p.AccessTokenType, validTypes)
	case p.AccessTokenTTLSeconds <= 0:
		return errors.New("accessTokenTTLSeconds is not positive")
	case !slices.Contains(validModes, p.Binding.Mode):
		return fmt.Errorf("binding mode %q is not one of %v", p.Binding.Mode, validModes)
	case p.Binding.Required && p.Binding.Mode == "None":
		return errors.New("binding is required but mode is None")
	case len(p.TokenSources) == 0:
		return errors.New("no token source")
	}
	for _, a := range p.Algorithms {
		if !slices.Contains([]string{"ES256", "ES384", "EdDSA", "RS256", "PS256"}, a) {
			return fmt.Errorf("algorithm %q is not supported", a)
		}
	}
	for _, s := range p.TokenSources {
		if !slices.Contains(validSources, s.Type) || (s.Type == "Cookie" && s.Name == "") {
			return fmt.Errorf("token source %q/%q is invalid", s.Type, s.Name)
		}
	}
	for _, r := range p.Routes {
		if !strings.HasPrefix(r.Path, "/") {
			return fmt.Errorf("route path %q does not start with /", r.Path)
		}
		if r.Anonymous && len(r.Scopes) > 0 {
			return fmt.Errorf("anonymous route %q requires scopes", r.Path)
		}
	}
	for _, c := range p.ForwardClaims {
		if c.Claim == "" || c.Header == "" {
			return errors.New("forwarded claim with an empty claim or header")
		}
	}
	return nil
}

func (r *Revocations) validate() error {
	lists := []struct {
		name string
		l    []Revoked
	}{{"jti", r.JTI}, {"sub", r.Subject}, {"sid", r.Session}, {"kid", r.KeyID}, {"client_id", r.ClientID}}
	for _, list := range lists {
		name := list.name
		for _, e := range list.l {
			if e.Value == "" {
				return fmt.Errorf("%s entry with an empty value", name)
			}
			if e.Expires <= 0 || e.IssuedBefore < 0 {
				return fmt.Errorf("%s entry with invalid times", name)
			}
			if e.IssuedBefore != 0 && name != "sub" && name != "client_id" {
				return fmt.Errorf("%s entry with issuedBefore: only sub and client_id take one", name)
			}
		}
	}
	return nil
}

// The member-name check. The schema is derived from the json tags of the types above, so
// it cannot drift from what Encode writes: a member is required unless its tag says
// omitempty, and json.RawMessage (the JWK Set) is left to jwks.ParseSet.

type schemaKind uint8

const (
	kindScalar schemaKind = iota // string, number or boolean
	kindRaw                      // any JSON value, checked elsewhere
	kindObject
	kindArray
)

type schemaNode struct {
	kind     schemaKind
	fields   []schemaField // kindObject, in declaration order
	required uint64        // kindObject: bit i set when fields[i] must be present
	elem     *schemaNode   // kindArray
}

type schemaField struct {
	name string
	node *schemaNode
}

var (
	rawMessageType = reflect.TypeFor[json.RawMessage]()
	envelopeSchema = func() *schemaNode {
		n := schemaOf(reflect.TypeFor[envelope]())
		n.fields[3].node = schemaOf(reflect.TypeFor[Content]()) // content is a RawMessage for the hash
		return n
	}()
)

func schemaOf(t reflect.Type) *schemaNode {
	switch {
	case t == rawMessageType:
		return &schemaNode{kind: kindRaw}
	case t.Kind() == reflect.Slice:
		return &schemaNode{kind: kindArray, elem: schemaOf(t.Elem())}
	case t.Kind() != reflect.Struct:
		return &schemaNode{kind: kindScalar}
	}
	n := &schemaNode{kind: kindObject}
	for f := range t.Fields() {
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			panic("bundle: every field needs a json name: " + t.Name() + "." + f.Name)
		}
		if !strings.Contains(","+opts+",", ",omitempty,") {
			n.required |= 1 << len(n.fields)
		}
		n.fields = append(n.fields, schemaField{name: name, node: schemaOf(f.Type)})
	}
	if len(n.fields) > 64 {
		panic("bundle: too many fields in " + t.Name())
	}
	return n
}

// lookup returns the index of the field named name, or -1.
func (n *schemaNode) lookup(name []byte) int {
	for i := range n.fields {
		if string(name) == n.fields[i].name { // no allocation
			return i
		}
	}
	return -1
}

// walker checks a document that checkJSON accepted against a schema. It relies on the
// document being valid JSON.
type walker struct {
	data []byte
	i    int
	path []pathSegment
	top  [4][]byte // the envelope members' values, in envelopeSchema order
}

type pathSegment struct {
	name  string // member name, or "" for an array element
	index int
}

func (w *walker) skipSpace() {
	for w.i < len(w.data) {
		switch w.data[w.i] {
		case ' ', '\t', '\n', '\r':
			w.i++
		default:
			return
		}
	}
}

// str consumes the string at w.i and returns the bytes between its quotes, and whether
// they hold an escape sequence.
func (w *walker) str() (raw []byte, escaped bool) {
	start := w.i + 1
	for j := start; ; j++ {
		switch w.data[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			w.i = j + 1
			return w.data[start:j], escaped
		}
	}
}

// skip consumes one value of any kind.
func (w *walker) skip() {
	depth := 0
	for {
		switch c := w.data[w.i]; {
		case c == '"':
			w.str()
		case c == '{' || c == '[':
			depth++
			w.i++
		case c == '}' || c == ']':
			depth--
			w.i++
		case depth == 0: // a number or literal on its own
			for w.i < len(w.data) && !isValueEnd(w.data[w.i]) {
				w.i++
			}
		default:
			w.i++
		}
		if depth == 0 {
			return
		}
	}
}

func isValueEnd(c byte) bool {
	switch c {
	case ',', '}', ']', ' ', '\t', '\r', '\n':
		return true
	}
	return false
}

// value checks the value at w.i against n and consumes it.
func (w *walker) value(n *schemaNode) error {
	c := w.data[w.i]
	if c == 'n' {
		return w.errorf("is null")
	}
	switch n.kind {
	case kindRaw:
		w.skip()
	case kindScalar:
		if c == '{' || c == '[' {
			return w.errorf("must be a string, number or boolean")
		}
		w.skip()
	case kindArray:
		if c != '[' {
			return w.errorf("must be an array")
		}
		w.i++
		w.skipSpace()
		if w.data[w.i] == ']' {
			w.i++
			return nil
		}
		w.path = append(w.path, pathSegment{})
		for idx := 0; ; idx++ {
			w.path[len(w.path)-1].index = idx
			w.skipSpace()
			if err := w.value(n.elem); err != nil {
				return err
			}
			w.skipSpace()
			c := w.data[w.i]
			w.i++
			if c == ']' {
				break
			}
		}
		w.path = w.path[:len(w.path)-1]
	case kindObject:
		if c != '{' {
			return w.errorf("must be an object")
		}
		return w.object(n)
	}
	return nil
}

func (w *walker) object(n *schemaNode) error {
	w.i++
	w.skipSpace()
	var seen uint64
	if w.data[w.i] == '}' {
		w.i++
	} else {
		w.path = append(w.path, pathSegment{})
		for {
			w.skipSpace()
			raw, escaped := w.str()
			if escaped { // rare: the name as a JSON parser sees it
				var name string
				_ = json.Unmarshal(w.data[w.i-len(raw)-2:w.i], &name) // a valid JSON string
				raw = []byte(name)
			}
			idx := n.lookup(raw)
			if idx < 0 {
				name := string(raw)
				w.path = w.path[:len(w.path)-1]
				for _, f := range n.fields {
					// encoding/json would have matched these: it folds case, so even
					// "ſub" (long s) matches "sub". strings.EqualFold folds the same way.
					if strings.EqualFold(f.name, name) {
						return w.errorf("has member %s, not %q: member names are case-sensitive", quoteName(name), f.name)
					}
				}
				return w.errorf("has unknown member %s", quoteName(name))
			}
			if seen&(1<<idx) != 0 {
				w.path = w.path[:len(w.path)-1]
				return w.errorf("has duplicate member %q", n.fields[idx].name)
			}
			seen |= 1 << idx
			w.path[len(w.path)-1].name = n.fields[idx].name
			w.skipSpace()
			w.i++ // ':'
			w.skipSpace()
			start := w.i
			if err := w.value(n.fields[idx].node); err != nil {
				return err
			}
			if n == envelopeSchema {
				w.top[idx] = w.data[start:w.i]
			}
			w.skipSpace()
			c := w.data[w.i]
			w.i++
			if c == '}' {
				break
			}
		}
		w.path = w.path[:len(w.path)-1]
	}
	if missing := n.required &^ seen; missing != 0 {
		for i, f := range n.fields {
			if missing&(1<<i) != 0 {
				return w.errorf("lacks required member %q", f.name)
			}
		}
	}
	return nil
}

// errorf reports a problem with the value at the current path, e.g. $.content.policy.
func (w *walker) errorf(format string, args ...any) error {
	var b strings.Builder
	b.WriteString("$")
	for _, s := range w.path {
		if s.name == "" {
			fmt.Fprintf(&b, "[%d]", s.index)
		} else {
			b.WriteString(".")
			b.WriteString(s.name)
		}
	}
	return fmt.Errorf("%s "+format, append([]any{b.String()}, args...)...)
}

// quoteName quotes a member name from the document for an error message, truncated.
func quoteName(name string) string {
	const maxLen = 64
	if len(name) > maxLen {
		cut := maxLen
		for cut > 0 && !utf8.RuneStart(name[cut]) {
			cut--
		}
		return strconv.Quote(name[:cut]) + "..."
	}
	return strconv.Quote(name)
}
