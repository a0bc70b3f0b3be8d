package binding

import (
	"errors"
	"net/url"
	"strings"
)

// normaliseHTU normalises the "htu" claim of a proof for comparison with
// the request URL (RFC 9449 section 4.3 step 9, RFC 3986 section 6).
//
// RFC 9449 section 4.2 defines htu as the target URI "without query and
// fragment parts". Keyward therefore rejects an htu that carries a query or
// a fragment (even an empty one: "?" or "#") instead of silently dropping
// them; a conforming client never sends one, and a proof that names a
// different resource than the one it is used for is not accepted. The query
// and fragment of the request URL, on the other hand, are ignored.
func normaliseHTU(htu string) (string, error) {
	if strings.ContainsAny(htu, "?#") {
		return "", errors.New("htu must not contain a query or fragment (RFC 9449 section 4.2)")
	}
	u, err := url.Parse(htu)
	if err != nil {
		return "", errors.New("htu is not a valid URI")
	}
	n, err := normaliseURL(u)
	if err != nil {
		return "", errors.New("htu: " + err.Error())
	}
	return n, nil
}

// normaliseRequestURL normalises the URL of the request a proof arrived
// with; its query and fragment are ignored.
func normaliseRequestURL(u *url.URL) (string, error) {
	if u == nil {
		return "", errors.New("no request URL")
	}
	return normaliseURL(u)
}

// normaliseURL renders scheme://authority/path of an absolute http or https
// URL after RFC 3986 syntax-based normalisation (section 6.2.2: scheme and
// host lowercased, percent-encodings of unreserved characters decoded and
// the others in uppercase hex, dot segments removed) and scheme-based
// normalisation (section 6.2.3: default or empty port removed, empty path
// as "/"). User information is not allowed. The query and fragment are
// never part of the result.
func normaliseURL(u *url.URL) (string, error) {
	if u.Opaque != "" || u.Host == "" {
		return "", errors.New("URL is not absolute")
	}
	scheme := strings.ToLower(u.Scheme)
	var defaultPort string
	switch scheme {
	case "https":
		defaultPort = "443"
	case "http":
		defaultPort = "80"
	default:
		return "", errors.New("URL scheme is not http or https")
	}
	if u.User != nil {
		return "", errors.New("URL must not contain user information")
	}
	host := strings.ToLower(u.Hostname())
	if host == "" {
		return "", errors.New("URL has an empty host")
	}
	if strings.Contains(host, ":") { // IPv6 literal
		host = "[" + host + "]"
	}
	port := strings.TrimLeft(u.Port(), "0")
	if u.Port() != "" && port == "" {
		port = "0"
	}
	if port != "" && port != defaultPort {
		host += ":" + port
	}
	path, err := normalisePath(u.EscapedPath())
	if err != nil {
		return "", err
	}
	return scheme + "://" + host + path, nil
}

// normalisePath applies percent-encoding normalisation and dot-segment
// removal to an escaped path; an empty path becomes "/".
func normalisePath(p string) (string, error) {
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
			return "", errors.New("URL path has an invalid percent-encoding")
		}
		v := unhex(p[i+1])<<4 | unhex(p[i+2])
		if isUnreserved(v) {
			b.WriteByte(v)
		} else {
			const hexDigits = "0123456789ABCDEF"
			b.WriteByte('%')
			b.WriteByte(hexDigits[v>>4])
			b.WriteByte(hexDigits[v&15])
		}
		i += 2
	}
	out := removeDotSegments(b.String())
	if out == "" {
		out = "/"
	}
	return out, nil
}

// removeDotSegments implements RFC 3986 section 5.2.4.
func removeDotSegments(in string) string {
	if !strings.Contains(in, ".") {
		return in
	}
	var out []string // output segments, each starting with "/" (or not, for a relative first one)
	for in != "" {
		switch {
		case strings.HasPrefix(in, "../"):
			in = in[3:]
		case strings.HasPrefix(in, "./"):
			in = in[2:]
		case strings.HasPrefix(in, "/./"):
			in = in[2:]
		case in == "/.":
			in = "/"
		case strings.HasPrefix(in, "/../"):
			in = in[3:]
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		case in == "/..":
			in = "/"
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		case in == "." || in == "..":
			in = ""
		default:
			start := 0
			if in[0] == '/' {
				start = 1
			}
			end := strings.IndexByte(in[start:], '/')
			if end < 0 {
				end = len(in)
			} else {
				end += start
			}
			out = append(out, in[:end])
			in = in[end:]
		}
	}
	return strings.Join(out, "")
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// isUnreserved reports whether c is an RFC 3986 unreserved character.
func isUnreserved(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}
