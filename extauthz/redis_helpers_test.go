package extauthz

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/specgate/specgate/extauthz/revocation"
)

// writeDirect adds an entry to the Redis set without publishing it.
func writeDirect(t *testing.T, url, key string) {
	t.Helper()
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	now := time.Now()
	e := revocation.Entry{Key: key, At: now, Expires: now.Add(time.Hour)}
	b, _ := json.Marshal(e)
	if err := rdb.ZAdd(context.Background(), "specgate:revocations", redis.Z{Score: float64(e.Expires.Unix()), Member: string(b)}).Err(); err != nil {
		t.Fatal(err)
	}
}
