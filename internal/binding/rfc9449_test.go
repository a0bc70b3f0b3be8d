package binding

import (
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

// The example proofs of RFC 9449, copied from the RFC text with the line
// breaks that the RFC adds "for display purposes only" removed. Their
// signatures verify under the embedded key, so the strings are exact.
const (
	// Section 4.1, Figure 2 (also Figure 3 and 4): a token request proof.
	// Header {"typ":"dpop+jwt","alg":"ES256","jwk":{"kty":"EC","x":"l8tF...",
	// "y":"9VE4...","crv":"P-256"}}; claims {"jti":"-BwC3ESc6acc2lTc",
	// "htm":"POST","htu":"https://server.example.com/token","iat":1562262616}.
	rfc9449TokenProof = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6Ik" +
		"VDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCR" +
		"nMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JE" +
		"QSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIj" +
		"oiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwia" +
		"WF0IjoxNTYyMjYyNjE2fQ.2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg" +
		"4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg"

	// Section 7.1, Figure 13 (decoded in Figure 14): a protected resource
	// request proof with ath, sent with the access token below.
	rfc9449ResourceProof = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6Ik" +
		"VDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCR" +
		"nMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JE" +
		"QSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiJlMWozVl9iS2ljOC1MQUVCIiwiaHRtIj" +
		"oiR0VUIiwiaHR1IjoiaHR0cHM6Ly9yZXNvdXJjZS5leGFtcGxlLm9yZy9wcm90ZWN0Z" +
		"WRyZXNvdXJjZSIsImlhdCI6MTU2MjI2MjYxOCwiYXRoIjoiZlVIeU8ycjJaM0RaNTNF" +
		"c05yV0JiMHhXWG9hTnk1OUlpS0NBcWtzbVFFbyJ9.2oW9RP35yRqzhrtNP86L-Ey71E" +
		"OptxRimPPToA1plemAgR6pxHF8y6-yqyVnmcw6Fy1dqd-jfxSYoMxhAJpLjA"

	// Section 7.1, Figure 12/13: the DPoP-bound access token.
	rfc9449AccessToken = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"

	// Section 6.1, Figure 9: cnf.jkt, the thumbprint of the example key.
	rfc9449JKT = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
)

func TestRFC9449Examples(t *testing.T) {
	tests := []struct {
		name         string
		proof        string
		iat          int64
		method, url  string
		token, jkt   string
		wantJTI      string
		wantHTU      string
		wantRejected string // with a wrong token/jkt, when set
	}{
		{
			name: "section 4.1 token request", proof: rfc9449TokenProof, iat: 1562262616,
			method: "POST", url: "https://server.example.com/token",
			wantJTI: "-BwC3ESc6acc2lTc", wantHTU: "https://server.example.com/token",
		},
		{
			name: "section 4.1 token request, key bound", proof: rfc9449TokenProof, iat: 1562262616,
			method: "POST", url: "https://server.example.com/token", jkt: rfc9449JKT,
			wantJTI: "-BwC3ESc6acc2lTc", wantHTU: "https://server.example.com/token",
		},
		{
			name: "section 7.1 resource request with ath", proof: rfc9449ResourceProof, iat: 1562262618,
			method: "GET", url: "https://resource.example.org/protectedresource",
			token: rfc9449AccessToken, jkt: rfc9449JKT,
			wantJTI: "e1j3V_bKic8-LAEB", wantHTU: "https://resource.example.org/protectedresource",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := clocktesting.NewFakeClock(time.Unix(tt.iat, 0))
			c := NewDPoPChecker(DPoPOptions{}, clk)
			p, err := c.Check(tt.proof, tt.method, testURL(t, tt.url), tt.token, tt.jkt)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			want := Proof{JKT: rfc9449JKT, JTI: tt.wantJTI, IAT: tt.iat, HTM: tt.method, HTU: tt.wantHTU}
			if *p != want {
				t.Errorf("Proof = %+v, want %+v", *p, want)
			}
			// The same proof again is a replay.
			if _, err := c.Check(tt.proof, tt.method, testURL(t, tt.url), tt.token, tt.jkt); err == nil || reasonOf(t, err).Reason != ReasonReplay {
				t.Errorf("second Check: err = %v, want replay", err)
			}
		})
	}

	// Negative checks with the RFC proofs: each changes one input.
	neg := []struct {
		name               string
		proof              string
		iat                time.Time
		method, url, token string
		jkt                string
		want               string
	}{
		{"token proof, wrong method", rfc9449TokenProof, time.Unix(1562262616, 0), "GET", "https://server.example.com/token", "", "", ReasonHTM},
		{"token proof, wrong URL", rfc9449TokenProof, time.Unix(1562262616, 0), "POST", "https://server.example.com/authorize", "", "", ReasonHTU},
		{"token proof, a day later", rfc9449TokenProof, time.Unix(1562262616, 0).Add(24 * time.Hour), "POST", "https://server.example.com/token", "", "", ReasonIAT},
		{"token proof with an access token (no ath)", rfc9449TokenProof, time.Unix(1562262616, 0), "POST", "https://server.example.com/token", rfc9449AccessToken, "", ReasonATH},
		{"resource proof, other token", rfc9449ResourceProof, time.Unix(1562262618, 0), "GET", "https://resource.example.org/protectedresource", "other", rfc9449JKT, ReasonATH},
		{"resource proof, other key binding", rfc9449ResourceProof, time.Unix(1562262618, 0), "GET", "https://resource.example.org/protectedresource", rfc9449AccessToken, strings.Repeat("A", 43), ReasonJKT},
		{"resource proof, tampered signature", strings.Replace(rfc9449ResourceProof, ".2oW9RP", ".2oW9RQ", 1), time.Unix(1562262618, 0), "GET", "https://resource.example.org/protectedresource", rfc9449AccessToken, rfc9449JKT, ReasonSignature},
	}
	for _, tt := range neg {
		t.Run(tt.name, func(t *testing.T) {
			c := NewDPoPChecker(DPoPOptions{}, clocktesting.NewFakeClock(tt.iat))
			_, err := c.Check(tt.proof, tt.method, testURL(t, tt.url), tt.token, tt.jkt)
			if err == nil || reasonOf(t, err).Reason != tt.want {
				t.Fatalf("err = %v, want reason %s", err, tt.want)
			}
		})
	}
}
