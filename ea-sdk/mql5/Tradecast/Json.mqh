//+------------------------------------------------------------------+
//| Tradecast/Json.mqh                                                |
//| A small JSON reader (a tree of CTcJson) and writer for the EA    |
//| link. Prices, volumes and money are written as decimal STRINGS   |
//| with DoubleToString at the symbol's digits, never as JSON        |
//| numbers; times and tickets are integers. Unknown fields in the   |
//| node's answers are simply never looked at (forward compatible).  |
//+------------------------------------------------------------------+
#property strict
#ifndef TC_JSON_MQH
#define TC_JSON_MQH

#define TC_JSON_MAX_DEPTH 32

enum ENUM_TC_JSON
  {
   TC_JNULL,
   TC_JBOOL,
   TC_JNUM,
   TC_JSTR,
   TC_JARR,
   TC_JOBJ
  };

//--- One JSON value. Numbers keep their text (str) so 64-bit tickets are not rounded.
class CTcJson
  {
public:
   ENUM_TC_JSON      type;
   string            key;
   string            str;
   bool              flag;
   CTcJson          *items[];

                     CTcJson(void) { type = TC_JNULL; key = ""; str = ""; flag = false; }
                    ~CTcJson(void)
     {
      for(int i = 0; i < ArraySize(items); i++)
         if(CheckPointer(items[i]) == POINTER_DYNAMIC)
            delete items[i];
      ArrayResize(items, 0);
     }
   int               Size(void) { return ArraySize(items); }
   CTcJson          *At(const int i)
     {
      if(i < 0 || i >= ArraySize(items))
         return NULL;
      return items[i];
     }
   CTcJson          *Get(const string k)
     {
      if(type != TC_JOBJ)
         return NULL;
      for(int i = 0; i < ArraySize(items); i++)
         if(items[i].key == k)
            return items[i];
      return NULL;
     }
   bool              IsNull(const string k)
     {
      CTcJson *v = Get(k);
      return v == NULL || v.type == TC_JNULL;
     }
   string            Str(const string k, const string def = "")
     {
      CTcJson *v = Get(k);
      if(v == NULL || (v.type != TC_JSTR && v.type != TC_JNUM))
         return def;
      return v.str;
     }
   long              Long(const string k, const long def = 0)
     {
      CTcJson *v = Get(k);
      if(v == NULL || v.type != TC_JNUM)
         return def;
      return StringToInteger(v.str);
     }
   ulong             ULong(const string k, const ulong def = 0)
     {
      CTcJson *v = Get(k);
      if(v == NULL || v.type != TC_JNUM)
         return def;
      return (ulong)StringToInteger(v.str);
     }
   //--- A decimal string ("1.09128") as a double; `def` when absent or null.
   double            Dec(const string k, const double def = 0.0)
     {
      CTcJson *v = Get(k);
      if(v == NULL || v.type != TC_JSTR)
         return def;
      return StringToDouble(v.str);
     }
   bool              Bool(const string k, const bool def = false)
     {
      CTcJson *v = Get(k);
      if(v == NULL || v.type != TC_JBOOL)
         return def;
      return v.flag;
     }
  };

//--- Recursive-descent parser with a depth limit; returns NULL on any malformed input.
class CTcJsonParser
  {
private:
   string            m_s;
   int               m_pos;
   int               m_len;

   ushort            Peek(void) { return (m_pos < m_len) ? StringGetCharacter(m_s, m_pos) : 0; }
   void              SkipWs(void)
     {
      while(m_pos < m_len)
        {
         ushort c = StringGetCharacter(m_s, m_pos);
         if(c == ' ' || c == '\t' || c == '\r' || c == '\n')
            m_pos++;
         else
            break;
        }
     }
   bool              Literal(const string word)
     {
      if(StringSubstr(m_s, m_pos, StringLen(word)) != word)
         return false;
      m_pos += StringLen(word);
      return true;
     }
   bool              ParseString(string &out)
     {
      out = "";
      if(Peek() != '"')
         return false;
      m_pos++;
      while(m_pos < m_len)
        {
         ushort c = StringGetCharacter(m_s, m_pos++);
         if(c == '"')
            return true;
         if(c != '\\')
           {
            out += ShortToString(c);
            continue;
           }
         if(m_pos >= m_len)
            return false;
         ushort e = StringGetCharacter(m_s, m_pos++);
         switch(e)
           {
            case '"':  out += "\""; break;
            case '\\': out += "\\"; break;
            case '/':  out += "/";  break;
            case 'b':  out += ShortToString(8); break;
            case 'f':  out += ShortToString(12); break;
            case 'n':  out += "\n"; break;
            case 'r':  out += "\r"; break;
            case 't':  out += "\t"; break;
            case 'u':
              {
               if(m_pos + 4 > m_len)
                  return false;
               string hex = StringSubstr(m_s, m_pos, 4);
               m_pos += 4;
               int code = 0;
               for(int i = 0; i < 4; i++)
                 {
                  ushort h = StringGetCharacter(hex, i);
                  int v = (h >= '0' && h <= '9') ? h - '0' : (h >= 'a' && h <= 'f') ? h - 'a' + 10 : (h >= 'A' && h <= 'F') ? h - 'A' + 10 : -1;
                  if(v < 0)
                     return false;
                  code = code * 16 + v;
                 }
               out += ShortToString((ushort)code);
               break;
              }
            default:
               return false;
           }
        }
      return false;
     }
   CTcJson          *ParseValue(const int depth)
     {
      if(depth > TC_JSON_MAX_DEPTH)
         return NULL;
      SkipWs();
      ushort c = Peek();
      CTcJson *v = new CTcJson();
      if(c == '{')
        {
         v.type = TC_JOBJ;
         m_pos++;
         SkipWs();
         if(Peek() == '}')
           {
            m_pos++;
            return v;
           }
         while(true)
           {
            SkipWs();
            string k;
            if(!ParseString(k))
              { delete v; return NULL; }
            SkipWs();
            if(Peek() != ':')
              { delete v; return NULL; }
            m_pos++;
            CTcJson *child = ParseValue(depth + 1);
            if(child == NULL)
              { delete v; return NULL; }
            child.key = k;
            int n = ArraySize(v.items);
            ArrayResize(v.items, n + 1);
            v.items[n] = child;
            SkipWs();
            if(Peek() == ',')
              { m_pos++; continue; }
            if(Peek() == '}')
              { m_pos++; return v; }
            delete v;
            return NULL;
           }
        }
      if(c == '[')
        {
         v.type = TC_JARR;
         m_pos++;
         SkipWs();
         if(Peek() == ']')
           {
            m_pos++;
            return v;
           }
         while(true)
           {
            CTcJson *child = ParseValue(depth + 1);
            if(child == NULL)
              { delete v; return NULL; }
            int n = ArraySize(v.items);
            ArrayResize(v.items, n + 1);
            v.items[n] = child;
            SkipWs();
            if(Peek() == ',')
              { m_pos++; continue; }
            if(Peek() == ']')
              { m_pos++; return v; }
            delete v;
            return NULL;
           }
        }
      if(c == '"')
        {
         v.type = TC_JSTR;
         if(!ParseString(v.str))
           { delete v; return NULL; }
         return v;
        }
      if(c == 't' && Literal("true"))
        { v.type = TC_JBOOL; v.flag = true; return v; }
      if(c == 'f' && Literal("false"))
        { v.type = TC_JBOOL; v.flag = false; return v; }
      if(c == 'n' && Literal("null"))
        { v.type = TC_JNULL; return v; }
      if(c == '-' || (c >= '0' && c <= '9'))
        {
         int start = m_pos;
         while(m_pos < m_len)
           {
            ushort d = StringGetCharacter(m_s, m_pos);
            if((d >= '0' && d <= '9') || d == '-' || d == '+' || d == '.' || d == 'e' || d == 'E')
               m_pos++;
            else
               break;
           }
         v.type = TC_JNUM;
         v.str = StringSubstr(m_s, start, m_pos - start);
         return v;
        }
      delete v;
      return NULL;
     }

public:
   //--- The tree of `text`, or NULL. The caller deletes it.
   CTcJson          *Parse(const string text)
     {
      m_s = text;
      m_pos = 0;
      m_len = StringLen(text);
      CTcJson *v = ParseValue(0);
      if(v == NULL)
         return NULL;
      SkipWs();
      if(m_pos != m_len)
        {
         delete v;
         return NULL;
        }
      return v;
     }
  };

CTcJson *TcJsonParse(const string text)
  {
   CTcJsonParser p;
   return p.Parse(text);
  }

//--- JSON string literal with escapes (quotes, backslash, control characters).
string TcJsonQuote(const string s)
  {
   string out = "\"";
   int n = StringLen(s);
   for(int i = 0; i < n; i++)
     {
      ushort c = StringGetCharacter(s, i);
      if(c == '"')
         out += "\\\"";
      else if(c == '\\')
         out += "\\\\";
      else if(c == '\n')
         out += "\\n";
      else if(c == '\r')
         out += "\\r";
      else if(c == '\t')
         out += "\\t";
      else if(c < 0x20)
         out += StringFormat("\\u%04x", c);
      else
         out += ShortToString(c);
     }
   return out + "\"";
  }

//--- Streaming writer: commas are placed for you; decimals go out as strings.
class CTcJsonWriter
  {
private:
   string            m_out;
   bool              m_first[];
   int               m_depth;
   bool              m_afterKey;

   void              Sep(void)
     {
      if(m_afterKey)
        {
         m_afterKey = false;
         return;
        }
      if(m_depth > 0)
        {
         if(!m_first[m_depth - 1])
            m_out += ",";
         m_first[m_depth - 1] = false;
        }
     }
   void              Push(void)
     {
      m_depth++;
      ArrayResize(m_first, m_depth);
      m_first[m_depth - 1] = true;
     }

public:
                     CTcJsonWriter(void) { m_out = ""; m_depth = 0; m_afterKey = false; }
   void              BeginObject(void) { Sep(); m_out += "{"; Push(); }
   void              EndObject(void) { m_out += "}"; m_depth--; }
   void              BeginArray(void) { Sep(); m_out += "["; Push(); }
   void              EndArray(void) { m_out += "]"; m_depth--; }
   void              Key(const string k) { Sep(); m_out += TcJsonQuote(k) + ":"; m_afterKey = true; }
   void              Str(const string v) { Sep(); m_out += TcJsonQuote(v); }
   void              Int(const long v) { Sep(); m_out += IntegerToString(v); }
   void              UInt(const ulong v) { Sep(); m_out += StringFormat("%I64u", v); }
   void              Dec(const double v, const int digits) { Sep(); m_out += "\"" + DoubleToString(v, digits) + "\""; }
   void              Bool(const bool v) { Sep(); m_out += (v ? "true" : "false"); }
   void              Null(void) { Sep(); m_out += "null"; }
   //--- Key + value shorthands.
   void              KStr(const string k, const string v) { Key(k); Str(v); }
   void              KInt(const string k, const long v) { Key(k); Int(v); }
   void              KUInt(const string k, const ulong v) { Key(k); UInt(v); }
   void              KDec(const string k, const double v, const int digits) { Key(k); Dec(v, digits); }
   void              KBool(const string k, const bool v) { Key(k); Bool(v); }
   //--- An optional price: null when 0 (MT5's "no SL/TP").
   void              KDecOpt(const string k, const double v, const int digits)
     {
      Key(k);
      if(v == 0.0)
         Null();
      else
         Dec(v, digits);
     }
   string            Text(void) { return m_out; }
   //--- Characters written so far (the bodies are ASCII but for symbol names and comments).
   int               Length(void) { return StringLen(m_out); }
  };
//+------------------------------------------------------------------+
#endif // TC_JSON_MQH
