// Package statstest holds counter structs to their Add methods in tests, so
// a new counter cannot be left out of a sum.
package statstest

import (
	"reflect"
	"testing"
)

// AddCoversEveryField fills every uint64 field of a T with a distinct value
// and checks that add(s, s) doubles each of them.
func AddCoversEveryField[T any](t testing.TB, add func(a, b T) T) {
	t.Helper()
	var s T
	v := reflect.ValueOf(&s).Elem()
	for i := range v.NumField() {
		v.Field(i).SetUint(uint64(i + 1))
	}
	sum := reflect.ValueOf(add(s, s))
	for i := range v.NumField() {
		if sum.Field(i).Uint() != 2*uint64(i+1) {
			t.Errorf("%s.Add leaves out %s", v.Type().Name(), v.Type().Field(i).Name)
		}
	}
}
