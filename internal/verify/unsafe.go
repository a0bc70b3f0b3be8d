package verify

import "unsafe"

// stringBytes returns the bytes of s without copying them. The result is only ever
// read (hashed, base64-decoded, passed to signature verification): writing to it would
// break the immutability of strings.
func stringBytes(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}
