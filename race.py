import json,urllib.request,time,random,socket
base='http://127.0.0.1:18481'
def call(m,p,tok=None,body=None,timeout=30):
    rq=urllib.request.Request(base+p,method=m,data=None if body is None else json.dumps(body).encode())
    rq.add_header('Content-Type','application/json')
    if tok: rq.add_header('Authorization','Bearer '+tok)
    try:
        with urllib.request.urlopen(rq,timeout=timeout) as r: return r.status,json.load(r)
    except urllib.error.HTTPError as e: return e.code,json.load(e)
def reg(n):
    s,j=call('POST','/_matrix/client/v3/register',body={'username':n,'password':'pw'})
    s,j=call('POST','/_matrix/client/v3/register',body={'username':n,'password':'pw','auth':{'type':'m.login.dummy','session':j['session']}})
    return j
r=str(random.randint(0,1<<30)); a=reg('ra'+r); b=reg('rb'+r)
s,room=call('POST','/_matrix/client/v3/createRoom',b['access_token'],{'preset':'public_chat'}); rid=room['room_id']
call('POST','/_matrix/client/v3/rooms/%s/join'%rid,a['access_token'],{})
SS='/_matrix/client/unstable/org.matrix.simplified_msc3575/sync'
req={'conn_id':'c','lists':{'all':{'ranges':[[0,0]],'timeline_limit':1,'required_state':[]}}}
s,j=call('POST',SS+'?timeout=0',a['access_token'],req); P=j['pos']; print('first pos',P)
# a long-poll on P, given up after 0.3 s (socket closed)
body=json.dumps(req).encode()
sk=socket.create_connection(('127.0.0.1',18481))
sk.sendall(('POST %s?pos=%s&timeout=20000 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n'%(SS,P,a['access_token'],len(body))).encode()+body)
time.sleep(0.3); sk.close(); print('long-poll on pos',P,'abandoned')
s,j=call('POST',SS+'?timeout=0&pos='+P,a['access_token'],req); P2=j['pos']; print('retry on',P,'->',s,P2)
call('PUT','/_matrix/client/v3/rooms/%s/send/m.room.message/t9'%rid,b['access_token'],{'msgtype':'m.text','body':'wake'})
time.sleep(0.3)
s,j=call('POST',SS+'?timeout=0&pos='+P2,a['access_token'],req); print('continue from',P2,'->',s,j.get('errcode'),'pos',j.get('pos'), 'rooms',list(j.get('rooms',{})))
