package mysql

import (
	"crypto/sha1"
	"crypto/sha256"
)

// NativePassword returns the mysql_native_password auth response for
// password over the server's scramble:
// SHA1(password) XOR SHA1(scramble || SHA1(SHA1(password))). An empty
// password gives an empty response.
func NativePassword(scramble []byte, password string) []byte {
	if password == "" {
		return nil
	}
	h1 := sha1.Sum([]byte(password))
	h2 := sha1.Sum(h1[:])
	h := sha1.New()
	h.Write(scramble)
	h.Write(h2[:])
	out := h.Sum(nil)
	for i := range out {
		out[i] ^= h1[i]
	}
	return out
}

// CachingSHA2Password returns the caching_sha2_password fast-path auth
// response for password over the server's scramble:
// SHA256(password) XOR SHA256(SHA256(SHA256(password)) || scramble). An
// empty password gives an empty response.
func CachingSHA2Password(scramble []byte, password string) []byte {
	if password == "" {
		return nil
	}
	h1 := sha256.Sum256([]byte(password))
	h2 := sha256.Sum256(h1[:])
	h := sha256.New()
	h.Write(h2[:])
	h.Write(scramble)
	out := h.Sum(nil)
	for i := range out {
		out[i] ^= h1[i]
	}
	return out
}

// scrambleFor computes the auth response of plugin, reporting false for a
// plugin the module cannot answer.
func scrambleFor(plugin string, scramble []byte, password string) ([]byte, bool) {
	switch plugin {
	case pluginNative:
		return NativePassword(scramble, password), true
	case pluginCachingSHA2:
		return CachingSHA2Password(scramble, password), true
	}
	return nil, false
}
