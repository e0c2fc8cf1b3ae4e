# Shell helpers the benchmark scripts share (sourced, not run).

# Waits up to 10 s for URL to answer 2xx (https without verifying: a throwaway certificate);
# fails early when PID, the server NAME, exits.
wait_ready() {  # URL PID NAME
  for _ in $(seq 1 100); do
    curl -kfs -o /dev/null --max-time 1 "$1" && return 0
    kill -0 "$2" 2>/dev/null || { echo "$3 exited during startup" >&2; return 1; }
    sleep 0.1
  done
  echo "$3 did not answer $1 within 10 s" >&2
  return 1
}

# The median of the numbers given as arguments.
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }

# A throwaway self-signed certificate for localhost/127.0.0.1 in DIR/cert.pem and DIR/key.pem;
# KEY_TYPE rsa (RSA 2048) or ec (ECDSA P-256).
make_certificate() {  # KEY_TYPE DIR
  local newkey
  case $1 in
    rsa) newkey=(-newkey rsa:2048) ;;
    ec) newkey=(-newkey ec -pkeyopt ec_paramgen_curve:P-256) ;;
    *) echo "KEY must be rsa or ec" >&2; return 1 ;;
  esac
  openssl req -x509 "${newkey[@]}" -nodes -days 2 -keyout "$2/key.pem" -out "$2/cert.pem" -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null
}
