"""fake_openai.py — a tiny OpenAI-compatible chat endpoint for tests, on
127.0.0.1 only: answers POST /v1/chat/completions like an explainer and a
scorer would (explanation = the most frequent <<marked>> token; score 1 for
excerpts containing it), checks the bearer key, logs request counts, and
exits by itself after `idle` seconds without requests (bounded).
usage: fake_openai.py PORTFILE KEY [IDLE_SECONDS]"""
import collections, json, re, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

portfile, key = sys.argv[1], sys.argv[2]
idle = float(sys.argv[3]) if len(sys.argv) > 3 else 60
state = {'last': time.time(), 'explain': 0, 'score': 0}


class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def reply(self, code, obj):
        b = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(b)))
        self.end_headers()
        self.wfile.write(b)

    def do_POST(self):
        state['last'] = time.time()
        body = self.rfile.read(int(self.headers.get('Content-Length', 0)))
        if self.path != '/v1/chat/completions':
            return self.reply(404, {'error': 'no such path'})
        if self.headers.get('Authorization') != 'Bearer ' + key:
            return self.reply(401, {'error': 'bad key'})
        req = json.loads(body)
        prompt = req['messages'][0]['content']
        if 'what does this feature detect' in prompt:
            state['explain'] += 1
            marks = collections.Counter(re.findall(r'<<(.*?)>>', prompt))
            tok = marks.most_common(1)[0][0] if marks else '?'
            content = 'Explanation: activates on <%s>' % tok
        else:
            state['score'] += 1
            m = re.search(r'activates on <(.*?)>', prompt)
            tok = m.group(1) if m else '\x00'
            n = int(re.search(r'exactly (\d+) numbers', prompt).group(1))
            lines = re.findall(r'^(\d+)\. (.*)$', prompt, re.M)[-n:]
            content = ', '.join('1' if tok in text else '0' for _, text in lines)
        self.reply(200, {'choices': [{'message': {'role': 'assistant', 'content': content}}]})


srv = ThreadingHTTPServer(('127.0.0.1', 0), H)
with open(portfile + '.tmp', 'w') as f:
    f.write(str(srv.server_address[1]))
import os
os.rename(portfile + '.tmp', portfile)
threading.Thread(target=srv.serve_forever, daemon=True).start()
while time.time() - state['last'] < idle:
    time.sleep(0.2)
srv.shutdown()
print(json.dumps({'explain': state['explain'], 'score': state['score']}))
