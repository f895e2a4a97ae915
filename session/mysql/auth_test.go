package mysql

import (
	"bytes"
	"encoding/hex"
	"testing"
)

// The vectors come from go-sql-driver/mysql's auth_test.go (v1.10.1):
// TestScrambleSHA256Pass, TestAuthFastCachingSHA256PasswordCached and
// TestAuthFastNativePassword, checked there against MySQL servers.
// MariaDB has no caching_sha2_password, so these vectors are how that
// algorithm is tested; mysql_native_password is also tested live against
// MariaDB by the lab tests (the raw client logs in with NativePassword).

func TestCachingSHA2PasswordVectors(t *testing.T) {
	scramble := []byte{10, 47, 74, 111, 75, 73, 34, 48, 88, 76, 114, 74, 37, 13, 3, 80, 82, 2, 23, 21}
	for _, v := range []struct{ pass, out string }{
		{"secret", "f490e76f66d9d86665ce54d98c78d0acfe2fb0b08b423da807144873d30b312c"},
		{"secret2", "abc3934a012cf342e876071c8ee202de51785b430258a7a0138bc79c4d800bc6"},
	} {
		if got := hex.EncodeToString(CachingSHA2Password(scramble, v.pass)); got != v.out {
			t.Errorf("CachingSHA2Password(%q) = %s, want %s", v.pass, got, v.out)
		}
	}
	scramble = []byte{90, 105, 74, 126, 30, 48, 37, 56, 3, 23, 115, 127, 69, 22, 41, 84, 32, 123, 43, 118}
	want := []byte{102, 32, 5, 35, 143, 161, 140, 241, 171, 232, 56, 139, 43, 14, 107, 196, 249, 170, 147,
		60, 220, 204, 120, 178, 214, 15, 184, 150, 26, 61, 57, 235}
	if got := CachingSHA2Password(scramble, "secret"); !bytes.Equal(got, want) {
		t.Errorf("CachingSHA2Password = %v, want %v", got, want)
	}
}

func TestNativePasswordVectors(t *testing.T) {
	scramble := []byte{70, 114, 92, 94, 1, 38, 11, 116, 63, 114, 23, 101, 126, 103, 26, 95, 81, 17, 24, 21}
	want := []byte{53, 177, 140, 159, 251, 189, 127, 53, 109, 252, 172, 50, 211, 192, 240, 164, 26, 48, 207, 45}
	if got := NativePassword(scramble, "secret"); !bytes.Equal(got, want) {
		t.Errorf("NativePassword = %v, want %v", got, want)
	}
}

func TestEmptyPasswords(t *testing.T) {
	if NativePassword([]byte("12345678901234567890"), "") != nil || CachingSHA2Password([]byte("x"), "") != nil {
		t.Error("an empty password must give an empty auth response")
	}
	if _, ok := scrambleFor("client_ed25519", nil, "x"); ok {
		t.Error("ed25519 claimed supported")
	}
}
