# The proxy (app) container's command in docker-compose.yaml and `make e2e`: nginx with its own
# server block (proxy.conf) and the upstream list the sidecar renders into the shared volume.
# nginx refuses to start with a missing include: wait for the sidecar's first configuration
# round (it comes once a `web` pod is configured). Then nginx is PID 1, and the sidecar, which
# shares this container's process namespace, reloads it with SIGHUP after every round.
set -e
cp /opt/ochopod/proxy.conf /etc/nginx/conf.d/proxy.conf
until [ -s /etc/nginx/ochopod/upstreams.conf ]; do sleep 0.2; done
exec nginx -g 'daemon off;'
