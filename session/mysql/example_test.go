package mysql_test

import (
	"fmt"

	"github.com/shadowcopy/tcpcopy/session"
	"github.com/shadowcopy/tcpcopy/session/mysql"
)

// The tcpcopy program's --mysql mode: -u gives the users, the module goes
// into every shard's session table. intercept must report response
// payload (its PayloadLimit at least 128) for the module to read the
// target's greeting.
func ExampleNew() {
	users, err := mysql.ParseUsers("app@app-pw,report@s3cret")
	if err != nil {
		fmt.Println(err)
		return
	}
	mod, err := mysql.New(&mysql.Config{Users: users})
	if err != nil {
		fmt.Println(err)
		return
	}
	cfg := session.Config{Protocol: mod /* Emitter, OnOpen, ... */}
	_ = cfg
	fmt.Println(len(users), "users")
	// Output: 2 users
}
