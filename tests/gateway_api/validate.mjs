// Validates Gateway API objects against the schemas npm's @kubernetes-models/gateway-api ships (generated from
// Gateway API's Go types), strictly: stdin is a JSON list of objects, stdout a JSON list with one list of
// problems per object (empty: valid). Run by tests/gateway_api_schema.py.
//
// The package's validators are compiled JSON-schema checks with no additionalProperties rule, so on their own
// they accept any unknown field, which the API server would prune without a word. Closing that hole: the
// object is handed to the validator through proxies that record every property the validator reads. A
// compiled schema reads each property it declares (to check it, or to see that a required one is missing) and
// iterates the keys of a map (labels); a key it never read is a field the schema does not know.

import { validate as gatewayV1 } from "@kubernetes-models/gateway-api/_schemas/IoK8sSigsGatewayApiApisV1Gateway";
import { validate as gatewayClassV1 } from "@kubernetes-models/gateway-api/_schemas/IoK8sSigsGatewayApiApisV1GatewayClass";
import { validate as httpRouteV1 } from "@kubernetes-models/gateway-api/_schemas/IoK8sSigsGatewayApiApisV1HTTPRoute";
import { validate as httpRouteV1beta1 } from "@kubernetes-models/gateway-api/_schemas/IoK8sSigsGatewayApiApisV1beta1HTTPRoute";

const VALIDATORS = {
  "gateway.networking.k8s.io/v1 HTTPRoute": httpRouteV1,
  "gateway.networking.k8s.io/v1beta1 HTTPRoute": httpRouteV1beta1,
  "gateway.networking.k8s.io/v1 Gateway": gatewayV1,
  "gateway.networking.k8s.io/v1 GatewayClass": gatewayClassV1,
};

function isObject(value) {
  return value !== null && typeof value === "object";
}

// A proxy of `value` (and, lazily, of everything inside it) that records in `read` which keys of which
// plain object were read.
function tracked(value, read, cache) {
  if (!isObject(value)) return value;
  if (cache.has(value)) return cache.get(value);
  read.set(value, new Set());
  const proxy = new Proxy(value, {
    get(target, key, receiver) {
      if (typeof key === "string") read.get(target).add(key);
      return tracked(Reflect.get(target, key, receiver), read, cache);
    },
    has(target, key) {
      if (typeof key === "string") read.get(target).add(key);
      return Reflect.has(target, key);
    },
  });
  cache.set(value, proxy);
  return proxy;
}

function unread(value, read, path) {
  if (Array.isArray(value)) return value.flatMap((item, i) => unread(item, read, `${path}/${i}`));
  if (!isObject(value)) return [];
  const seen = read.get(value) ?? new Set();
  return Object.keys(value).flatMap((key) =>
    seen.has(key) ? unread(value[key], read, `${path}/${key}`) : [`${path}/${key}: unknown field`],
  );
}

function problems(obj) {
  const validate = VALIDATORS[`${obj?.apiVersion} ${obj?.kind}`];
  if (validate === undefined) {
    return [`no Gateway API schema for ${obj?.apiVersion} ${obj?.kind} (known: ${Object.keys(VALIDATORS)})`];
  }
  const read = new Map();
  const valid = validate(tracked(obj, read, new Map()));
  const errors = valid
    ? []
    : validate.errors.map((e) => `${e.instancePath || "/"}: ${e.keyword} ${JSON.stringify(e.params)}`);
  return [...new Set([...errors, ...unread(obj, read, "")])];
}

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const objects = JSON.parse(Buffer.concat(chunks).toString("utf8"));
process.stdout.write(JSON.stringify(objects.map(problems)));
