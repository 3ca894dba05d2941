/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A protobuf-c message as JSON the way Go's encoding/json prints the CRI's
 * generated structs, i.e. what containerd puts in verbose info (crictl
 * inspect's info.config): field names as in the .proto (snake_case), zero
 * values and empty lists left out (omitempty), enums and 64-bit integers as
 * numbers, maps as objects, bytes as text. Users' scripts read these keys
 * through crictl inspect -o go-template.
 */
#ifndef TINYCRI_CORE_PB_JSON_H
#define TINYCRI_CORE_PB_JSON_H

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>

/*
 * The JSON object (owned). A bytes field that is not valid UTF-8 becomes
 * null (the CRI's only bytes fields are strings in the Go API).
 */
json_t *pb_json(const ProtobufCMessage *m);

#endif
