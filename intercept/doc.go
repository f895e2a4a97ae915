// Package intercept is the target side of the copier: Interceptors that
// capture the target's responses and keep them from the real clients, the
// wire protocol that reports those responses, a Server that routes them to
// the copiers that own the clients, and the Client that copiers dial it
// with.
package intercept
