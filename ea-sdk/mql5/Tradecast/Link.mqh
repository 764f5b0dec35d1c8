//+------------------------------------------------------------------+
//| Tradecast/Link.mqh                                                |
//| The signed WebRequest wrapper of the EA link (ea-link.md,        |
//| "Transport" and "Authentication"): the four X-Tradecast-*        |
//| headers, UTF-8 bodies without a trailing NUL, timestamps from    |
//| TimeGMT(), and the node's answer signature checked before        |
//| anything in the answer is believed.                              |
//+------------------------------------------------------------------+
#property strict
#ifndef TC_LINK_MQH
#define TC_LINK_MQH

#include "Crypto.mqh"

//--- One journal line per kind of failure at most this often; the next says how many were left out.
#define TC_JOURNAL_EVERY_MS 60000

string g_tcJournalKind[];
ulong  g_tcJournalTick[];
int    g_tcJournalLeftOut[];

//--- Prints a failure to the Experts journal, one line per `kind` a minute at most: a node that
//--- refuses every call, or is down, would otherwise print ~10 lines a second.
void TcJournal(const string kind, const string message)
  {
   ulong now = GetTickCount64();
   int n = ArraySize(g_tcJournalKind);
   int i = 0;
   while(i < n && g_tcJournalKind[i] != kind)
      i++;
   if(i == n)
     {
      ArrayResize(g_tcJournalKind, n + 1);
      ArrayResize(g_tcJournalTick, n + 1);
      ArrayResize(g_tcJournalLeftOut, n + 1);
      g_tcJournalKind[n] = kind;
      g_tcJournalLeftOut[n] = 0;
     }
   else if(now - g_tcJournalTick[i] < TC_JOURNAL_EVERY_MS)
     {
      g_tcJournalLeftOut[i]++;
      return;
     }
   g_tcJournalTick[i] = now;
   if(g_tcJournalLeftOut[i] > 0)
      PrintFormat("Tradecast: %s (and %d more like it in the last minute)", message, g_tcJournalLeftOut[i]);
   else
      PrintFormat("Tradecast: %s", message);
   g_tcJournalLeftOut[i] = 0;
  }

#define TC_LINK_OK            0   // a signed answer (any status)
#define TC_LINK_NO_ANSWER     1   // WebRequest failed or timed out
#define TC_LINK_BAD_SIGNATURE 2   // answer unsigned or wrongly signed: ignored

class CTcLink
  {
private:
   string            m_base;
   string            m_key;
   string            m_secret;
   ulong             m_counter;
   ulong             m_lastContactTick;
   int               m_lastError;

   //--- The signature header of an answer ("Name: value\r\n" lines; names are case-insensitive).
   string            AnswerSignature(const string headers)
     {
      string lines[];
      int n = StringSplit(headers, '\n', lines);
      for(int i = 0; i < n; i++)
        {
         string line = lines[i];
         StringTrimRight(line);
         StringTrimLeft(line);
         int colon = StringFind(line, ":");
         if(colon <= 0)
            continue;
         string name = StringSubstr(line, 0, colon);
         StringToLower(name);
         if(name == "x-tradecast-signature")
           {
            string value = StringSubstr(line, colon + 1);
            StringTrimLeft(value);
            StringTrimRight(value);
            return value;
           }
        }
      return "";
     }

public:
                     CTcLink(void) { m_counter = 0; m_lastContactTick = 0; m_lastError = 0; }

   //--- GetLastError() of the last WebRequest that got no answer (0 after an answer).
   int               LastError(void) { return m_lastError; }

   void              Init(const string base, const string key, const string secret)
     {
      m_base = base;
      // "http://127.0.0.1:7341/" and "http://127.0.0.1:7341" are the same node.
      while(StringLen(m_base) > 0 && StringGetCharacter(m_base, StringLen(m_base) - 1) == '/')
         m_base = StringSubstr(m_base, 0, StringLen(m_base) - 1);
      m_key = key;
      m_secret = secret;
     }

   //--- Unix ms from TimeGMT() (the EA's wall clock; the node allows ±30 s).
   string            Timestamp(void)
     {
      long ms = (long)TimeGMT() * 1000 + (long)((GetMicrosecondCount() / 1000) % 1000);
      return IntegerToString(ms);
     }

   //--- A fresh nonce: 24 lowercase hex characters (within [A-Za-z0-9_-], 16-64 long), from a
   //--- hash of a counter, the clocks and the account, so it never repeats in a session.
   string            Nonce(void)
     {
      m_counter++;
      string seed = StringFormat("%I64u|%I64u|%I64u|%I64d|%d", m_counter, GetMicrosecondCount(),
                                 GetTickCount64(), AccountInfoInteger(ACCOUNT_LOGIN), MathRand());
      uchar bytes[];
      TcUtf8(seed, bytes);
      string h = TcSha256Hex(bytes);
      return StringSubstr(h, 0, 24);
     }

   //--- GetTickCount64() of the last signed 200 answer: the node's silence is measured from it.
   //--- A signed refusal (401, 413, 500, ...) proves a process holds the key, not that the node
   //--- is doing its job, so it does not count (TcCall calls MarkContact on a 200 only).
   ulong             LastContactTick(void) { return m_lastContactTick; }
   void              MarkContact(void) { m_lastContactTick = GetTickCount64(); }

   //--- POSTs `body` to `path` (e.g. "/ea/v1/poll"). Returns TC_LINK_OK with `status` and
   //--- `answer` only when the answer is signed with our secret over status, nonce and body.
   int               Post(const string path, const string body, const int timeout_ms,
                          int &status, string &answer)
     {
      status = 0;
      answer = "";
      uchar bytes[];
      int n = TcUtf8(body, bytes);
      string ts = Timestamp();
      string nonce = Nonce();
      string sig = TcSignRequest(m_secret, "POST", path, ts, nonce, bytes);
      string headers = "Content-Type: application/json\r\n"
                       + "X-Tradecast-Key: " + m_key + "\r\n"
                       + "X-Tradecast-Timestamp: " + ts + "\r\n"
                       + "X-Tradecast-Nonce: " + nonce + "\r\n"
                       + "X-Tradecast-Signature: " + sig + "\r\n";
      char data[];
      ArrayResize(data, n);
      for(int i = 0; i < n; i++)
         data[i] = (char)bytes[i];
      char result[];
      string resultHeaders = "";
      ResetLastError();
      int code = WebRequest("POST", m_base + path, headers, timeout_ms, data, result, resultHeaders);
      if(code == -1)
        {
         int err = GetLastError();
         m_lastError = err;
         if(err == 4014)
            TcJournal("4014", StringFormat("WebRequest is not allowed for %s. Add it under Tools > Options > Expert Advisors > \"Allow WebRequest for listed URL\".", m_base));
         else
            TcJournal("no-answer", StringFormat("no answer from the node at %s%s (error %d)", m_base, path, err));
         return TC_LINK_NO_ANSWER;
        }
      m_lastError = 0;
      int rn = ArraySize(result);
      uchar raw[];
      ArrayResize(raw, rn);
      for(int i = 0; i < rn; i++)
         raw[i] = (uchar)result[i];
      string given = AnswerSignature(resultHeaders);
      if(given == "")
        {
         //--- The one unsigned answer a real node gives: a node cannot sign for a key it does not
         //--- know. Only the journal line changes; nothing in an unsigned answer is acted on.
         if(code == 401 && StringFind(TcFromUtf8(raw), "\"unknown-key\"") >= 0)
            TcJournal("unknown-key", StringFormat("the node does not know the key id \"%s\" (an unsigned 401 unknown-key: a node cannot sign for a key it does not know). Check InpKeyId against the key id `ea-key new` printed for this node's data dir", m_key));
         else
            TcJournal("signature", StringFormat("answer ignored: no signature (status %d) from %s", code, path));
         return TC_LINK_BAD_SIGNATURE;
        }
      string expected = TcSignResponse(m_secret, code, nonce, raw);
      if(!TcConstantTimeEquals(expected, given))
        {
         TcJournal("signature", StringFormat("answer ignored: wrong signature (status %d) from %s", code, path));
         return TC_LINK_BAD_SIGNATURE;
        }
      status = code;
      answer = TcFromUtf8(raw);
      return TC_LINK_OK;
     }
  };
//+------------------------------------------------------------------+
#endif // TC_LINK_MQH
