package session

import (
	"reflect"
	"sync/atomic"
	"testing"
	"unsafe"
)

// TestStatsCoverEveryCounter holds snapshot and Add to every counter, so a
// new counter cannot be left out of Stats.
func TestStatsCoverEveryCounter(t *testing.T) {
	var c counters
	v := reflect.ValueOf(&c).Elem()
	for i := range v.NumField() {
		(*atomic.Uint64)(unsafe.Pointer(v.Field(i).UnsafeAddr())).Store(uint64(i + 1))
	}
	if v.NumField() != reflect.TypeFor[Stats]().NumField() {
		t.Errorf("%d counters but %d Stats fields", v.NumField(), reflect.TypeFor[Stats]().NumField())
	}
	s := c.snapshot()
	sum := s.Add(s)
	sv, av := reflect.ValueOf(s), reflect.ValueOf(sum)
	for i := range sv.NumField() {
		if sv.Field(i).Uint() == 0 {
			t.Errorf("Stats.%s is not filled by snapshot", sv.Type().Field(i).Name)
		}
		if av.Field(i).Uint() != 2*sv.Field(i).Uint() {
			t.Errorf("Stats.Add leaves out %s", sv.Type().Field(i).Name)
		}
	}
}
