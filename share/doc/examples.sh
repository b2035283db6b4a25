#!/bin/sh
# Print section 15 ("Worked examples") of protocol.md from the fixture keys
# with fixed time stamps.  Ed25519 is deterministic, so the output is the
# same on every run; t/spec.bats checks that protocol.md holds exactly this
# text and that every signed object in it verifies.
#   usage: share/doc/examples.sh KEYDIR   (KEYDIR holds alice.key, bob.key, node.key)
set -eu
K=$1
ALICE=$K/alice.key NODE=$K/node.key
A=$(jq -r .did "$ALICE")
N=$(jq -r .did "$NODE")
AKID=${A#did:key:}
ADDR=node.example:7700
SPACE=channel/$AKID/protocols

b64hash() { openssl dgst -sha256 -binary | basenc --base64url | tr -d '='; }
canon() { ns-sign --canonical | head -c -1; }
# sign as the node: envelopes and challenges have no author
node_sign() {
	obj=$(cat)
	sig=$(printf '%s\n' "$obj" | canon | ns-sign -k "$NODE" --raw)
	printf '%s\n' "$obj" | jq -c --arg s "$sig" '. + {sig: $s}' | ns-sign --canonical
}
id_of() { printf '%s\n' "$1" | canon | b64hash; }
block() { printf '```json example\n%s\n```\n\n' "$1"; }
text() { printf '```\n%s\n```\n\n' "$1"; }

cat <<EOT
### 15.1 Keys and DIDs

alice's key file (seed 01…01; never leaves her machine):

EOT
block "$(cat "$ALICE")"
cat <<EOT
Her DID, key id and author hash (\`base64url(SHA-256("$A"))\`):

EOT
text "$A
$AKID
$(printf %s "$A" | b64hash)"
echo "The node's DID (seed 04…04): \`$N\`."
echo
cat <<'EOT'
### 15.2 Canonical form

The input

EOT
IN='{"b":[1e21,0.000001,-0,1E-7,100.0,5e-324],"a":"é\u001f\n\/","\ufb01":1,"\ud83d\ude00":2}'
text "$IN"
echo "has the RFC 8785 form below: numbers in ECMAScript form, \\/ unescaped, the"
echo "control character escaped, and the key U+1F600 (UTF-16 D83D DE00) sorted"
echo "before U+FB01, although its UTF-8 bytes sort after:"
echo
text "$(printf '%s\n' "$IN" | canon)"
cat <<'EOT'
### 15.3 A signed beam

The beam alice's client builds:

EOT
BEAM0='{"type":"beam","title":"On sovereign substrates","body":"Email is older than most platforms…","author":"'$A'","ts":1767225600000}'
block "$BEAM0"
echo "The bytes she signs (the object without \`sig\`, canonical):"
echo
text "$(printf '%s\n' "$BEAM0" | canon)"
BEAM=$(printf '%s\n' "$BEAM0" | ns-sign -k "$ALICE")
echo "The signed beam:"
echo
block "$BEAM"
BEAMID=$(id_of "$BEAM")
PATHB="beam/$(printf %s "$A" | b64hash)/$BEAMID"
echo "Its beam id is the SHA-256 of those canonical bytes *with* \`sig\`, so its path is"
echo
text "$PATHB"
cat <<'EOT'
### 15.4 Login

The node's challenge on a new connection:

EOT
CH=$(jq -cn --arg n "$N" --arg a "$ADDR" '{type:"auth.challenge",nonce:"q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA",node:$n,address:$a,ts:1767225600000}' | node_sign)
block "$(jq -cn --argjson p "$CH" '{jsonrpc:"2.0",method:"auth.challenge",params:$p}')"
echo "alice's login request:"
echo
LOGIN=$(jq -cn --arg n "$N" --arg a "$ADDR" '{type:"auth.login",nonce:"q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA",node:$n,address:$a,role:"client",ts:1767225600100}' | ns-sign -k "$ALICE")
block "$(jq -cn --argjson p "$LOGIN" '{jsonrpc:"2.0",id:1,method:"auth.login",params:$p}')"
echo "and the node's answer:"
echo
block "$(jq -cn --arg d "$A" --arg n "$N" '{jsonrpc:"2.0",id:1,result:{did:$d,role:"client",node:$n}}')"
cat <<'EOT'
### 15.5 Creating a channel

EOT
CREATE=$(jq -cn --arg s "$SPACE" --arg n "$N" --arg a "$ADDR" '{type:"space.create",space:$s,name:"Protocols",node:$n,address:$a,ts:1767225601000}' | ns-sign -k "$ALICE")
block "$(jq -cn --argjson e "$CREATE" '{jsonrpc:"2.0",id:2,method:"space.create",params:{event:$e}}')"
E1=$(jq -cn --arg s "$SPACE" --argjson e "$CREATE" --arg n "$N" '{type:"envelope",space:$s,seq:1,prev:null,event:$e,node:$n,ts:1767225601005}' | node_sign)
echo "The node sequences it as envelope 1:"
echo
block "$E1"
echo "and answers:"
echo
block "$(jq -cn --arg s "$SPACE" --arg d "$A" --arg a "$ADDR" --arg eid "$(id_of "$CREATE")" '{jsonrpc:"2.0",id:2,result:{id:$s,type:"channel",name:"Protocols",ownerDid:$d,nodeAddress:$a,address:("northstar://"+$a+"/"+$s),seq:1,eventId:$eid}}')"
cat <<'EOT'
### 15.6 Beaming into it

alice sends the beam of 15.3 with its ref:

EOT
REF=$(jq -cn --arg s "$SPACE" --arg b "$PATHB" --arg n "$N" --arg a "$ADDR" '{type:"beam.ref",space:$s,beam:$b,node:$n,address:$a,ts:1767225602000}' | ns-sign -k "$ALICE")
block "$(jq -cn --argjson e "$REF" --argjson b "$BEAM" '{jsonrpc:"2.0",id:3,method:"space.beam",params:{event:$e,beam:$b}}')"
E2=$(jq -cn --arg s "$SPACE" --argjson e "$REF" --arg n "$N" --arg p "$(id_of "$E1")" '{type:"envelope",space:$s,seq:2,prev:$p,event:$e,node:$n,ts:1767225602004}' | node_sign)
echo "Envelope 2 chains to envelope 1 (\`prev\` is the id of envelope 1):"
echo
block "$E2"
echo "The answer, and the notification every subscriber of the space receives:"
echo
block "$(jq -cn --arg s "$SPACE" --arg eid "$(id_of "$REF")" --arg b "$PATHB" '{jsonrpc:"2.0",id:3,result:{space:$s,seq:2,eventId:$eid,beam:$b}}')"
block "$(jq -cn --argjson e "$E2" '{jsonrpc:"2.0",method:"event",params:$e}')"
cat <<'EOT'
### 15.7 Deleting the beam

EOT
TOMB=$(jq -cn --arg b "$PATHB" '{type:"beam.tombstone",beam:$b,ts:1767225603000}' | ns-sign -k "$ALICE")
block "$(jq -cn --argjson e "$TOMB" '{jsonrpc:"2.0",id:4,method:"beam.delete",params:{event:$e}}')"
block "$(jq -cn --arg b "$PATHB" --arg s "$SPACE" '{jsonrpc:"2.0",id:4,result:{beam:$b,spaces:[$s]}}')"
E3=$(jq -cn --arg s "$SPACE" --argjson e "$TOMB" --arg n "$N" --arg p "$(id_of "$E2")" '{type:"envelope",space:$s,seq:3,prev:$p,event:$e,node:$n,ts:1767225603002}' | node_sign)
echo "The tombstone enters the space as envelope 3:"
echo
block "$E3"
cat <<'EOT'
### 15.8 An error

A beam into a space alice has not joined, sent by bob:

EOT
block '{"jsonrpc":"2.0","id":5,"error":{"code":-32003,"message":"not a member of channel/z6Mk…/protocols","data":{"reason":"forbidden"}}}'
