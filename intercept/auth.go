package intercept

import (
	"bufio"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
)

// ErrAuth is matched (errors.Is) by the errors that report a failed
// handshake proof: the peer does not know the shared secret (or a relay
// stands between TLS sessions).
var ErrAuth = errors.New("intercept: authentication failed")

// authError is an authentication failure with detail that matches ErrAuth.
type authError struct{ msg string }

func (e *authError) Error() string        { return "intercept: " + e.msg }
func (e *authError) Is(target error) bool { return target == ErrAuth }

const (
	labelClient = "tcpcopy v2 client"
	labelServer = "tcpcopy v2 server"
	// exporterLabel is the TLS exporter label (RFC 5705 section 4 asks for
	// the "EXPORTER" prefix on private labels).
	exporterLabel = "EXPORTER-tcpcopy-v2"
	bindingLen    = 32
)

// appendClientHello appends a copier's hello with a fresh nonce.
func appendClientHello(b []byte, copierID uint64) []byte {
	b = AppendHello(b, Hello{Version: WireVersion})
	b = binary.BigEndian.AppendUint64(b, copierID)
	var nonce [NonceLen]byte
	rand.Read(nonce[:]) // never fails (crypto/rand, Go 1.24)
	return append(b, nonce[:]...)
}

// serverProof computes the server's proof for client hello ch.
func serverProof(secret, ch, serverNonce, binding []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(labelServer))
	m.Write(ch)
	m.Write(serverNonce)
	m.Write(binding)
	return m.Sum(nil)
}

// clientProof computes the copier's proof for client hello ch and the
// first 24 bytes of the server hello (prefix and nonce).
func clientProof(secret, ch, shHead, binding []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(labelClient))
	m.Write(ch)
	m.Write(shHead)
	m.Write(binding)
	return m.Sum(nil)
}

// channelBinding returns the TLS exporter value of c, or nil for plain TCP.
func channelBinding(c net.Conn) ([]byte, error) {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return nil, nil
	}
	cs := tc.ConnectionState()
	b, err := cs.ExportKeyingMaterial(exporterLabel, nil, bindingLen)
	if err != nil {
		return nil, fmt.Errorf("intercept: export TLS keying material: %w", err)
	}
	return b, nil
}

// serverHandshake runs the server's side of the native handshake after the
// copier's 8-byte prefix (already read into prefix and checked to carry the
// magic and this version). It returns the copier id. Errors match
// ErrProtocol (bad bytes), ErrAuth (wrong proof) or are I/O errors.
func serverHandshake(c net.Conn, br *bufio.Reader, prefix []byte, secret []byte) (uint64, error) {
	var ch [ClientHelloLen]byte
	copy(ch[:], prefix)
	if _, err := io.ReadFull(br, ch[HelloLen:]); err != nil {
		return 0, fmt.Errorf("intercept: read hello: %w", err)
	}
	id := binary.BigEndian.Uint64(ch[HelloLen:])
	binding, err := channelBinding(c)
	if err != nil {
		return id, err
	}
	var sh [ServerHelloLen]byte
	b := AppendHello(sh[:0], Hello{Version: WireVersion})
	var nonce [NonceLen]byte
	rand.Read(nonce[:])
	b = append(b, nonce[:]...)
	b = append(b, serverProof(secret, ch[:], nonce[:], binding)...)
	if _, err := c.Write(b); err != nil {
		return id, fmt.Errorf("intercept: write hello: %w", err)
	}
	var proof [ProofLen]byte
	if _, err := io.ReadFull(br, proof[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			// The copier left after our proof: it does not share our secret.
			return id, &authError{msg: "copier closed the connection after the server's proof: it rejected it (different shared secret?)"}
		}
		return id, fmt.Errorf("intercept: read proof: %w", err)
	}
	if !hmac.Equal(proof[:], clientProof(secret, ch[:], sh[:HelloLen+NonceLen], binding)) {
		return id, &authError{msg: "copier's proof is wrong: it does not know the shared secret"}
	}
	var w [FrameHeaderLen]byte
	if _, err := c.Write(appendFrameHeader(w[:0], FrameWelcome, 0)); err != nil {
		return id, fmt.Errorf("intercept: write welcome: %w", err)
	}
	return id, nil
}

// clientHandshake runs the copier's side of the native handshake.
func clientHandshake(c net.Conn, br *bufio.Reader, secret []byte, copierID uint64) error {
	var chb [ClientHelloLen]byte
	ch := appendClientHello(chb[:0], copierID)
	if _, err := c.Write(ch); err != nil {
		return fmt.Errorf("intercept: write hello: %w", err)
	}
	var sh [ServerHelloLen]byte
	if _, err := io.ReadFull(br, sh[:HelloLen]); err != nil {
		return fmt.Errorf("intercept: read hello: %w", err)
	}
	h, err := ParseHello(sh[:HelloLen])
	if err != nil {
		return err
	}
	if err := h.checkVersion(); err != nil {
		return err
	}
	if _, err := io.ReadFull(br, sh[HelloLen:]); err != nil {
		return fmt.Errorf("intercept: read hello: %w", err)
	}
	binding, err := channelBinding(c)
	if err != nil {
		return err
	}
	nonce := sh[HelloLen : HelloLen+NonceLen]
	if !hmac.Equal(sh[HelloLen+NonceLen:], serverProof(secret, ch, nonce, binding)) {
		return &authError{msg: "server's proof is wrong: it does not know the shared secret"}
	}
	if _, err := c.Write(clientProof(secret, ch, sh[:HelloLen+NonceLen], binding)); err != nil {
		return fmt.Errorf("intercept: write proof: %w", err)
	}
	var w [FrameHeaderLen]byte
	if _, err := io.ReadFull(br, w[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return &authError{msg: "server closed the connection after our proof: it rejected it (different shared secret?)"}
		}
		return fmt.Errorf("intercept: read welcome: %w", err)
	}
	if FrameType(w[0]) != FrameWelcome || w[2] != 0 || w[3] != 0 {
		return protoErrorf("expected a Welcome frame, got type %d of %d bytes", w[0], binary.BigEndian.Uint16(w[2:]))
	}
	return nil
}
