'use strict';
// esm's Lambda Runtime API client for Node.js (nodejs18.x, nodejs20.x, nodejs22.x ...).
//
// Lambda's own client, `aws-lambda-ric` on npm, builds curl and aws-lambda-cpp from source when
// installed (autotools, cmake, a C++ toolchain): esm starts this file with the machine's `node`
// instead. It behaves as Lambda's Node.js runtime does, as its documentation and its runtime
// interface client describe:
//
// - the handler `dir/file.export.nested` is loaded from LAMBDA_TASK_ROOT: `file` (no extension),
//   `file.js` (CommonJS, or an ES module under a package.json with "type": "module"),
//   `file.mjs`, `file.cjs`, then `file` as a package resolved from the task root;
// - async handlers answer with their promise; callback handlers answer through
//   `callback(err, result)`, once the event loop is empty unless
//   `context.callbackWaitsForEmptyEventLoop` is false; a sync handler that never calls back
//   answers null when the loop empties (an async one that never settles fails);
// - errors are `{errorType, errorMessage, trace}` (name, message, stack lines), a thrown
//   non-Error is `{errorType: typeof, errorMessage: String(it), trace: []}`; load failures are
//   Runtime.ImportModuleError, Runtime.UserCodeSyntaxError, Runtime.HandlerNotFound,
//   Runtime.MalformedHandlerName, posted to /init/error;
// - console output is one line per call: `ISO time \t requestId \t LEVEL \t message` (newlines
//   inside a message become \r), or one JSON object per line when AWS_LAMBDA_LOG_FORMAT is
//   JSON, filtered by AWS_LAMBDA_LOG_LEVEL.
//
// Not supported: response streaming (awslambda.streamifyResponse answers with an error).

const fs = require('fs');
const http = require('http');
const path = require('path');
const url = require('url');
const util = require('util');

// -- errors -----------------------------------------------------------------------------------

class ImportModuleError extends Error {}
class HandlerNotFound extends Error {}
class MalformedHandlerName extends Error {}
class UserCodeSyntaxError extends Error {}
class UnhandledPromiseRejection extends Error {
  constructor(reason, promise) {
    super(reason);
    this.reason = reason;
    this.promise = promise;
  }
}
class NodeJsExit extends Error {
  constructor() {
    super(
      'The Lambda runtime client detected an unexpected Node.js exit code. This is most ' +
        'commonly caused by a Promise that was never settled. For more information, see ' +
        'https://nodejs.org/docs/latest/api/process.html#exit-codes',
    );
  }
}
for (const kind of [
  ImportModuleError,
  HandlerNotFound,
  MalformedHandlerName,
  UserCodeSyntaxError,
  UnhandledPromiseRejection,
  NodeJsExit,
]) {
  kind.prototype.name = `Runtime.${kind.name}`;
}

function looksLikeError(value) {
  return (
    value &&
    typeof value.name === 'string' &&
    typeof value.message === 'string' &&
    typeof value.stack === 'string' &&
    value.name &&
    value.message &&
    value.stack
  );
}

function escapeDel(text) {
  return typeof text === 'string' ? text.replaceAll('\x7F', '%7F') : text;
}

// The body of /error and /init/error.
function errorBody(error) {
  try {
    if (util.types.isNativeError(error) || looksLikeError(error)) {
      return {
        errorType: escapeDel(error.name),
        errorMessage: escapeDel(error.message),
        trace: escapeDel(error.stack).split('\n'),
      };
    }
    return { errorType: typeof error, errorMessage: String(error), trace: [] };
  } catch (_) {
    return {
      errorType: 'handled',
      errorMessage:
        'callback called with Error argument, but there was a problem while retrieving one ' +
        'or more of its message, name, and stack',
    };
  }
}

function intoError(value) {
  return value instanceof Error ? value : new Error(value);
}

// An error as the text log shows it: a tab, then JSON with errorType, errorMessage, the
// error's own fields and its stack as lines.
function formatted(error) {
  const withFields = (_key, value) => {
    if (!(value instanceof Error)) return value;
    const out = Object.assign(
      { errorType: value.name, errorMessage: value.message, code: value.code },
      value,
    );
    if (typeof value.stack === 'string') out.stack = value.stack.split('\n');
    return out;
  };
  try {
    return '\t' + JSON.stringify(error, withFields);
  } catch (_) {
    return '\t' + JSON.stringify(errorBody(error));
  }
}

// -- logs -------------------------------------------------------------------------------------

const LEVELS = {
  TRACE: 1,
  DEBUG: 2,
  INFO: 3,
  WARN: 4,
  ERROR: 5,
  FATAL: 6,
};
let requestId; // undefined during init, as on Lambda
const jsonLogs = (process.env.AWS_LAMBDA_LOG_FORMAT || '').toUpperCase() === 'JSON';

function jsonErrorFields(_key, value) {
  if (!(value instanceof Error)) return value;
  return Object.assign(
    {
      errorType: value?.constructor?.name ?? 'UnknownError',
      errorMessage: value.message,
      stackTrace: typeof value.stack === 'string' ? value.stack.split('\n') : value.stack,
    },
    value,
  );
}

function jsonLine(level, params) {
  const entry = { timestamp: new Date().toISOString(), level, requestId };
  if (params.length === 1) {
    entry.message = params[0];
    try {
      return JSON.stringify(entry, jsonErrorFields);
    } catch (_) {
      entry.message = util.format(entry.message);
      return JSON.stringify(entry);
    }
  }
  entry.message = util.format(...params);
  const error = params.find((p) => p instanceof Error);
  if (error) {
    entry.errorType = error?.constructor?.name ?? 'UnknownError';
    entry.errorMessage = error.message;
    entry.stackTrace = typeof error.stack === 'string' ? error.stack.split('\n') : [];
  }
  return JSON.stringify(entry);
}

function textLine(level, params) {
  return `${new Date().toISOString()}\t${requestId}\t${level}\t${util.format(...params)}`;
}

function write(level, params) {
  const line = jsonLogs ? jsonLine(level, params) : textLine(level, params);
  process.stdout.write(line.replace(/\n/g, '\r') + '\n');
}

function patchConsole() {
  // the level filter applies to JSON logs only, as on Lambda
  const wanted = jsonLogs ? (process.env.AWS_LAMBDA_LOG_LEVEL || '').toUpperCase() : '';
  const floor = LEVELS[wanted] ?? LEVELS.TRACE;
  const method = (level) =>
    LEVELS[level] >= floor ? (...params) => write(level, params) : () => {};
  console.trace = method('TRACE');
  console.debug = method('DEBUG');
  console.info = method('INFO');
  console.log = console.info;
  console.warn = method('WARN');
  console.error = method('ERROR');
  console.fatal = (...params) => write('FATAL', params);
}

function logError(what, error) {
  if (jsonLogs) console.error(intoError(error));
  else console.error(what, formatted(intoError(error)));
}

// -- the Runtime API --------------------------------------------------------------------------

const [apiHost, apiPort] = (process.env.AWS_LAMBDA_RUNTIME_API || '').split(':');
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const PREFIX = '/2018-06-01/runtime';

function call(method, where, body, headers) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(body, 'utf8');
    const request = http.request(
      {
        host: apiHost,
        port: parseInt(apiPort, 10),
        path: PREFIX + where,
        method,
        agent,
        headers: Object.assign(
          data ? { 'Content-Type': 'application/json', 'Content-Length': data.length } : {},
          headers || {},
        ),
      },
      (response) => {
        const chunks = [];
        response.on('data', (chunk) => chunks.push(chunk));
        response.on('end', () =>
          resolve({
            status: response.statusCode,
            headers: response.headers,
            body: Buffer.concat(chunks).toString('utf8'),
          }),
        );
        response.on('error', reject);
      },
    );
    request.on('error', reject);
    request.end(data);
  });
}

function serialized(result) {
  return JSON.stringify(result === undefined ? null : result);
}

function postError(where, error) {
  const body = errorBody(error);
  let text;
  try {
    text = JSON.stringify(body);
  } catch (_) {
    text = JSON.stringify({ errorType: body.errorType, errorMessage: String(body.errorMessage) });
  }
  return call('POST', where, text, { 'Lambda-Runtime-Function-Error-Type': body.errorType || '' });
}

function fatal(error) {
  process.stderr.write(`esm nodejs runtime: ${error && error.stack ? error.stack : error}\n`);
  process.exit(1);
}

// -- loading the handler ----------------------------------------------------------------------

function typeModule(folder) {
  if (folder.endsWith('/node_modules')) return false;
  const manifest = path.join(folder, 'package.json');
  if (fs.existsSync(manifest)) {
    try {
      return JSON.parse(fs.readFileSync(manifest, 'utf8'))?.type === 'module';
    } catch (error) {
      console.warn(
        `${manifest} cannot be read, it will be ignored for ES module detection purposes.`,
        error,
      );
      return false;
    }
  }
  const parent = path.resolve(folder, '..');
  return parent === folder ? false : typeModule(parent);
}

function requireIfThere(file) {
  return fs.existsSync(file) ? require(file) : undefined;
}

async function importIfThere(file) {
  return fs.existsSync(file) ? await import(url.pathToFileURL(file).href) : undefined;
}

async function loadModule(root, moduleRoot, name) {
  const base = path.resolve(root, moduleRoot, name);
  const bare = requireIfThere(base);
  if (bare) return bare;
  const esm = fs.existsSync(base + '.js') && typeModule(path.dirname(base + '.js'));
  if (!esm) {
    const loaded = requireIfThere(base + '.js');
    if (loaded) return loaded;
  }
  const loaded =
    (esm && (await importIfThere(base + '.js'))) ||
    (await importIfThere(base + '.mjs')) ||
    requireIfThere(base + '.cjs');
  if (loaded) return loaded;
  return require(require.resolve(name, { paths: [root, moduleRoot] }));
}

async function loadHandler(root, handler) {
  if (handler.includes('..')) {
    throw new MalformedHandlerName(
      `'${handler}' is not a valid handler name. Use absolute paths when specifying root ` +
        'directories in handler names.',
    );
  }
  const leaf = path.basename(handler);
  const moduleRoot = handler.substring(0, handler.indexOf(leaf));
  const match = leaf.match(/^([^.]*)\.(.*)$/);
  if (!match) throw new MalformedHandlerName('Bad handler');
  const [, name, exported] = match;
  globalThis.awslambda = {
    streamifyResponse: (fn) => {
      fn[Symbol.for('aws.lambda.runtime.handler.streaming')] = 'response';
      return fn;
    },
  };
  let loaded;
  try {
    loaded = await loadModule(root, moduleRoot, name);
  } catch (error) {
    if (error instanceof SyntaxError) throw new UserCodeSyntaxError(error);
    if (error && error.code === 'MODULE_NOT_FOUND') throw new ImportModuleError(error);
    throw error;
  }
  const fn = exported.split('.').reduce((found, key) => found && found[key], loaded);
  if (!fn) throw new HandlerNotFound(`${handler} is undefined or not exported`);
  if (typeof fn !== 'function') throw new HandlerNotFound(`${handler} is not a function`);
  return fn;
}

// -- invocations ------------------------------------------------------------------------------

let beforeExit = () => {};
const errorCallbacks = {
  // during init: /init/error, then exit as Lambda's client does
  uncaught: (error) => postError('/init/error', error).then(() => process.exit(129), fatal),
  rejected: (error) => postError('/init/error', error).then(() => process.exit(128), fatal),
};

function parseHeader(value, name) {
  if (value === undefined) return undefined;
  try {
    return JSON.parse(value);
  } catch (error) {
    throw new Error(`Cannot parse ${name} as json: ${error.toString()}`);
  }
}

function scheduleNext(handler, isAsync) {
  setImmediate(() => once(handler, isAsync).catch(fatal));
}

async function once(handler, isAsync) {
  const next = await call('GET', '/invocation/next');
  if (next.status !== 200) {
    // esm is closing this environment
    process.exit(0);
  }
  const headers = next.headers;
  const id = headers['lambda-runtime-aws-request-id'];
  requestId = id;
  if (headers['lambda-runtime-trace-id']) {
    process.env._X_AMZN_TRACE_ID = headers['lambda-runtime-trace-id'];
  } else {
    delete process.env._X_AMZN_TRACE_ID;
  }
  const where = `/invocation/${encodeURIComponent(id)}`;
  const again = () => scheduleNext(handler, isAsync);
  errorCallbacks.uncaught = (error) =>
    postError(`${where}/error`, error).then(() => process.exit(129), fatal);
  errorCallbacks.rejected = (error) =>
    postError(`${where}/error`, error).then(() => process.exit(128), fatal);

  let answered = false;
  const fail = (error) => {
    logError('Invoke Error', error);
    postError(`${where}/error`, error).then(again, fatal);
  };
  const complete = (result) => {
    if (answered) {
      console.error(
        'Invocation has already been reported as done. Cannot call complete more than once ' +
          'per invocation.',
      );
      return;
    }
    answered = true;
    let body;
    try {
      body = serialized(result);
    } catch (_) {
      fail(new Error('Unable to stringify response body'));
      return;
    }
    call('POST', `${where}/response`, body).then(again, fatal);
  };
  let waitForEmptyLoop = true;
  let finished = false;
  const first =
    (fn) =>
    (...args) => {
      if (!finished) {
        finished = true;
        fn(...args);
      }
    };
  const done = (error, result) => {
    beforeExit = () => {};
    if (error !== undefined && error !== null) fail(error);
    else complete(result);
  };
  const callback = first((error, result) => {
    beforeExit = () => {};
    if (error !== undefined && error !== null) fail(error);
    else if (!waitForEmptyLoop) complete(result);
    else beforeExit = () => setImmediate(() => complete(result));
  });
  const deadline = Number(headers['lambda-runtime-deadline-ms']);
  const context = {
    get callbackWaitsForEmptyEventLoop() {
      return waitForEmptyLoop;
    },
    set callbackWaitsForEmptyEventLoop(value) {
      waitForEmptyLoop = value;
    },
    succeed: first((result) => done(null, result)),
    fail: first((error) => done(error === undefined || error === null ? 'handled' : error)),
    done: first(done),
    functionVersion: process.env.AWS_LAMBDA_FUNCTION_VERSION,
    functionName: process.env.AWS_LAMBDA_FUNCTION_NAME,
    memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    logGroupName: process.env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: process.env.AWS_LAMBDA_LOG_STREAM_NAME,
    invokedFunctionArn: headers['lambda-runtime-invoked-function-arn'],
    awsRequestId: id,
    getRemainingTimeInMillis: () => deadline - Date.now(),
  };
  beforeExit = () => {
    finished = true;
    answered = true;
    if (isAsync) {
      const error = new NodeJsExit();
      logError('Invoke Error', error);
      postError(`${where}/error`, error).then(again, fatal);
    } else {
      call('POST', `${where}/response`, 'null').then(again, fatal);
    }
  };
  try {
    context.clientContext = parseHeader(headers['lambda-runtime-client-context'], 'ClientContext');
    context.identity = parseHeader(headers['lambda-runtime-cognito-identity'], 'CognitoIdentity');
    const result = handler(JSON.parse(next.body), context, callback);
    if (result && typeof result.then === 'function') {
      result.then(context.succeed, context.fail).catch(context.fail);
    }
  } catch (error) {
    callback(error);
  }
}

async function main() {
  patchConsole();
  process.on('uncaughtException', (error) => {
    logError('Uncaught Exception', error);
    errorCallbacks.uncaught(error);
  });
  process.on('unhandledRejection', (reason, promise) => {
    const error = new UnhandledPromiseRejection(reason, promise);
    logError('Unhandled Promise Rejection', error);
    errorCallbacks.rejected(error);
  });
  process.on('beforeExit', () => beforeExit());
  const root = process.env.LAMBDA_TASK_ROOT || process.cwd();
  const handler = await loadHandler(root, process.env._HANDLER || '');
  if (handler[Symbol.for('aws.lambda.runtime.handler.streaming')]) {
    throw new Error('esm does not run response streaming handlers');
  }
  const isAsync = handler.constructor?.name === 'AsyncFunction';
  if (
    process.env.AWS_LAMBDA_NODEJS_DISABLE_CALLBACK_WARNING === undefined &&
    handler.length === 3 &&
    !isAsync
  ) {
    console.warn(
      'AWS Lambda plans to remove support for callback-based function handlers starting ' +
        'with Node.js 24. You will need to update this function to use an async handler to ' +
        'use Node.js 24 or later. For more information and to provide feedback on this ' +
        'change, see https://github.com/aws/aws-lambda-nodejs-runtime-interface-client/' +
        'issues/137. To disable this warning, set the ' +
        'AWS_LAMBDA_NODEJS_DISABLE_CALLBACK_WARNING environment variable.',
    );
  }
  scheduleNext(handler, isAsync);
}

main().catch((error) => {
  logError('Uncaught Exception', error);
  errorCallbacks.uncaught(error);
});
