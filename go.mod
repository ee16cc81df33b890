module github.com/gatehouse-gw/gatehouse

go 1.26.8

require (
	go.yaml.in/yaml/v3 v3.0.6
	golang.org/x/sys v0.50.0
	gopkg.in/natefinch/lumberjack.v2 v2.2.1
)

require github.com/coder/websocket v1.8.15 // indirect
