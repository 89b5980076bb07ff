-- An in-process language server for the plugin's own tests (loaded in the child Neovim): answers
-- textDocument/inlineCompletion with whatever `respond` returns, records every message it receives.
-- Tests of the real server live in the other specs; this one makes ranges, encodings and timing exact.

local M = {}

---@type { method: string, params: any }[]
M.received = {}

--- Position encoding the server announces.
M.encoding = "utf-16"

--- The codestral/status it sends after initialize.
M.status = { state = "ready", message = "", lastLatencyMs = vim.NIL, model = "fake" }

--- Answer to textDocument/inlineCompletion: a result, and a delay in ms (nil: answer on the next tick).
---@type fun(params: table): (any, integer?)
M.respond = function()
  return { items = {} }
end

---@param method string
---@return table[] params of each message received with that method
function M.messages(method)
  local out = {}
  for _, m in ipairs(M.received) do
    if m.method == method then
      out[#out + 1] = m.params
    end
  end
  return out
end

---@param dispatchers vim.lsp.rpc.Dispatchers
---@return vim.lsp.rpc.PublicClient
function M.cmd(dispatchers)
  local closing, next_id = false, 0
  M.dispatchers = dispatchers -- for M.send_status
  local server = {}

  function server.request(method, params, callback, notify_reply_callback)
    next_id = next_id + 1
    local id = next_id
    M.received[#M.received + 1] = { method = method, params = params }
    local result, delay = nil, nil
    if method == "initialize" then
      result = {
        capabilities = {
          positionEncoding = M.encoding,
          textDocumentSync = { openClose = true, change = 2 },
          inlineCompletionProvider = true,
        },
      }
      vim.schedule(function()
        dispatchers.notification("codestral/status", vim.deepcopy(M.status))
      end)
    elseif method == "textDocument/inlineCompletion" then
      result, delay = M.respond(params)
    end
    vim.defer_fn(function()
      callback(nil, result)
      if notify_reply_callback then
        notify_reply_callback(id)
      end
    end, delay or 0)
    return true, id
  end

  function server.notify(method, params)
    M.received[#M.received + 1] = { method = method, params = params }
    if method == "exit" then
      closing = true
      dispatchers.on_exit(0, 15)
    end
    return true
  end

  function server.is_closing()
    return closing
  end

  function server.terminate()
    closing = true
  end

  return server
end

--- Sends a codestral/status now (a load that ends, a state that changes).
---@param status table
function M.send_status(status)
  M.dispatchers.notification("codestral/status", status)
end

--- Sends a server notification now (the cascade's codestral/inlineCompletionRefresh, ...).
---@param method string
---@param params table
function M.send(method, params)
  M.dispatchers.notification(method, params)
end

return M
