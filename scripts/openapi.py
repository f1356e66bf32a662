#!/usr/bin/env python3
"""Writes control-plane/src/api/openapi.json, the API's OpenAPI 3 document (served at
/openapi.json and used by the schemathesis test): run it after changing a route."""
import json
ref = lambda n: {"$ref": f"#/components/schemas/{n}"}
status = {"description": "a Kubernetes-style Status naming the problem", "content": {"application/json": {"schema": ref("Status")}}}
def errors(*codes):
    return {str(c): status for c in codes}
obj_body = {"required": True, "content": {"application/json": {"schema": ref("Object")}}}
patch_body = {"required": True, "content": {"application/merge-patch+json": {"schema": {"type": "object"}}}}
obj_resp = {"content": {"application/json": {"schema": ref("Object")}}}
list_resp = {"content": {"application/json": {"schema": ref("List")}}}
ns = {"name": "namespace", "in": "path", "required": True, "example": "default", "schema": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"}}
name = {"name": "name", "in": "path", "required": True, "example": "hello", "schema": {"type": "string", "minLength": 1, "maxLength": 253}}
list_params = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 0}},
    {"name": "continue", "in": "query", "schema": {"type": "string"}},
    {"name": "fieldSelector", "in": "query", "schema": {"type": "string"}},
    {"name": "labelSelector", "in": "query", "schema": {"type": "string"}},
]
common = (401, 403)
paths = {}
def collection(path, plurals, namespaced):
    params = ([ns] if namespaced else []) + [{"name": "plural", "in": "path", "required": True, "schema": {"type": "string", "enum": plurals}}]
    paths[path] = {
        "parameters": params,
        "get": {"operationId": f"list{'Namespaced' if namespaced else 'Cluster'}", "summary": "List objects (add watch=true for a stream of events)", "parameters": list_params,
                "responses": {"200": {"description": "the list", **list_resp}, **errors(400, 404, 410, *common)}},
        "post": {"operationId": f"create{'Namespaced' if namespaced else 'Cluster'}", "summary": "Create an object", "requestBody": obj_body,
                 "responses": {"201": {"description": "created", **obj_resp}, **errors(400, 404, 409, 413, 422, 429, 507, 405, *common)}},
    }
    item = path + "/{name}"
    paths[item] = {
        "parameters": params + [name],
        "get": {"operationId": f"read{'Namespaced' if namespaced else 'Cluster'}", "responses": {"200": {"description": "the object", **obj_resp}, **errors(400, 404, *common)}},
        "put": {"operationId": f"replace{'Namespaced' if namespaced else 'Cluster'}", "requestBody": obj_body,
                "responses": {"200": {"description": "replaced", **obj_resp}, **errors(400, 404, 409, 413, 422, 507, 405, *common)}},
        "patch": {"operationId": f"patch{'Namespaced' if namespaced else 'Cluster'}", "requestBody": patch_body,
                  "responses": {"200": {"description": "patched", **obj_resp}, **errors(400, 404, 409, 413, 415, 422, 507, 405, *common)}},
        "delete": {"operationId": f"delete{'Namespaced' if namespaced else 'Cluster'}", "responses": {"200": {"description": "deleted", **obj_resp}, **errors(400, 404, 409, 507, 405, *common)}},
    }
    paths[item + "/status"] = {
        "parameters": params + [name],
        "put": {"operationId": f"replaceStatus{'Namespaced' if namespaced else 'Cluster'}", "requestBody": obj_body,
                "responses": {"200": {"description": "status replaced", **obj_resp}, **errors(400, 404, 409, 413, 422, 507, 405, *common)}},
    }
collection("/apis/flotilla.dev/v1/namespaces/{namespace}/{plural}", ["workloads", "instances", "events", "revisions"], True)
collection("/apis/flotilla.dev/v1/{plural}", ["nodes", "tokens", "workloads", "instances", "events", "revisions"], False)
paths["/apis/flotilla.dev/v1/namespaces/{namespace}/instances/{name}/log"] = {
    "parameters": [ns, name],
    "get": {"operationId": "readLog", "summary": "An instance's output, read from its node",
            "parameters": [{"name": "previous", "in": "query", "schema": {"type": "boolean"}}],
            "responses": {"200": {"description": "the log", "content": {"text/plain": {"schema": {"type": "string"}}}}, **errors(400, 404, 429, 502, *common)}},
}
digest = {"name": "digest", "in": "path", "required": True, "example": "0" * 64, "schema": {"type": "string"}}
paths["/blobs/sha256/{digest}"] = {
    "parameters": [digest],
    "get": {"operationId": "readBlob", "responses": {"200": {"description": "the module", "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}, **errors(400, 404, *common)}},
    "head": {"operationId": "checkBlob", "responses": {"200": {"description": "present"}, "400": {"description": "not a digest"}, "404": {"description": "absent"}, "401": {"description": "no credential"}, "403": {"description": "not allowed"}}},
    "put": {"operationId": "uploadBlob", "requestBody": {"required": True, "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
            "responses": {"201": {"description": "stored"}, **errors(400, 413, 507, *common)}},
}
paths["/certificates/node"] = {
    "post": {"operationId": "signNodeCertificate", "summary": "Sign a node's certificate request (join token, or the node's own certificate to renew)",
             "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object", "required": ["node", "csr"], "additionalProperties": False,
                 "properties": {"node": {"type": "string"}, "csr": {"type": "string"}}}}}},
             "responses": {"201": {"description": "the certificate", "content": {"application/json": {"schema": {"type": "object", "properties": {"certificate": {"type": "string"}, "ca": {"type": "string"}}}}}},
                           **errors(400, 409, 415, 422, *common)}},
}
paths["/healthz"] = {"get": {"operationId": "health", "security": [], "responses": {"200": {"description": "ok", "content": {"text/plain": {"schema": {"type": "string"}}}}}}}
paths["/cacerts"] = {"get": {"operationId": "caCertificate", "security": [], "responses": {"200": {"description": "the cluster CA (PEM)", "content": {"application/x-pem-file": {"schema": {"type": "string"}}}}}}}
paths["/openapi.json"] = {"get": {"operationId": "openapi", "security": [], "responses": {"200": {"description": "this document", "content": {"application/json": {"schema": {"type": "object"}}}}}}}
doc = {
    "openapi": "3.0.3",
    "info": {"title": "Flotilla API", "version": "v1", "description": "Kubernetes-shaped REST API of the Flotilla control plane. TLS only; a bearer token or a node certificate on every route but /healthz, /cacerts and /openapi.json. Errors are Status objects."},
    "security": [{"bearer": []}],
    "paths": paths,
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Status": {"type": "object", "required": ["kind", "code", "reason", "message"], "properties": {
                "apiVersion": {"type": "string"}, "kind": {"type": "string", "enum": ["Status"]}, "status": {"type": "string"},
                "reason": {"type": "string"}, "message": {"type": "string"}, "code": {"type": "integer"}}},
            "Object": {"type": "object", "required": ["apiVersion", "kind", "metadata"], "properties": {
                "apiVersion": {"type": "string", "enum": ["flotilla.dev/v1"]},
                "kind": {"type": "string", "enum": ["Workload", "Instance", "Event", "Node", "Token"]},
                "metadata": {"type": "object", "required": ["name"], "properties": {
                    "name": {"type": "string"}, "namespace": {"type": "string"}, "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "resourceVersion": {"type": "string"}, "uid": {"type": "string"}, "generation": {"type": "integer"}, "creationTimestamp": {"type": "string"}}},
                "spec": {"type": "object"}, "status": {"type": "object"}}},
            "List": {"type": "object", "required": ["kind", "items", "metadata"], "properties": {
                "apiVersion": {"type": "string"}, "kind": {"type": "string"},
                "metadata": {"type": "object", "properties": {"resourceVersion": {"type": "string"}, "continue": {"type": "string"}, "remainingItemCount": {"type": "integer"}}},
                "items": {"type": "array", "items": ref("Object")}}},
        },
    },
}
import os
json.dump(doc, open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "../control-plane/src/api/openapi.json"), "w"), indent=1)

