#!/bin/sh
# make certificates: everything needed to try signing without Qt's test data, made with the
# openssl command: a CA (ca.crt), a developer CA it issued (devca.crt), a developer
# certificate that one issued (dev.p12), and a store certificate the CA issued (store.p12).
# The PKCS#12 files' password is "password" (CERT_PASSWORD to change it). Usage:
#   build/make-certificates.sh [folder]   (default: certs)
set -eu
dir=${1:-certs}
password=${CERT_PASSWORD:-password}
mkdir -p "$dir"
cd "$dir"
days=3650
printf 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n' > ca.ext
printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,nonRepudiation\n' > leaf.ext
openssl req -x509 -newkey rsa:2048 -nodes -days "$days" -subj "/O=Example/CN=Example CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -keyout ca.key -out ca.crt 2>/dev/null
# issue NAME SUBJECT ISSUER EXTENSIONS: NAME.key and NAME.crt, issued by ISSUER.crt/.key
issue() {
    openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$1.key" -out "$1.csr" 2>/dev/null
    openssl x509 -req -in "$1.csr" -CA "$3.crt" -CAkey "$3.key" -CAcreateserial \
        -days "$days" -extfile "$4" -out "$1.crt" 2>/dev/null
    rm -f "$1.csr"
}
issue devca "/O=Example/CN=Example developer CA" ca ca.ext
issue dev "/O=Example/CN=Example developer" devca leaf.ext
issue store "/O=Example/CN=Example store" ca leaf.ext
openssl pkcs12 -export -inkey dev.key -in dev.crt -certfile devca.crt -name developer \
    -out dev.p12 -passout "pass:$password"
openssl pkcs12 -export -inkey store.key -in store.crt -name store \
    -out store.p12 -passout "pass:$password"
rm -f ca.ext leaf.ext ./*.srl
echo "made in $(pwd): ca.crt, devca.crt, dev.p12 and store.p12 (password: $password)"
