# Sourced by compare.sh and ab.sh: serves $WORK/www from an nginx on
# loopback (sendfile, keep-alive), at a random port left in $PORT; its pid
# file is $WORK/nginx.pid (the caller kills it).
start_nginx() {
  PORT=$((20000 + RANDOM % 20000))
  mkdir -p "$WORK/tmp"
  cat >"$WORK/nginx.conf" <<CONF
worker_processes 2;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  keepalive_requests 100000;
  client_body_temp_path $WORK/tmp;
  proxy_temp_path $WORK/tmp;
  fastcgi_temp_path $WORK/tmp;
  uwsgi_temp_path $WORK/tmp;
  scgi_temp_path $WORK/tmp;
  server {
    listen 127.0.0.1:$PORT;
    root $WORK/www;
  }
}
CONF
  nginx -c "$WORK/nginx.conf"
}
