-- The plugin with the real server (`python -m codestral_lsp serve`, see helpers.server_cmd): typing,
-- ghost text, accepting, dismissing, settings. Suggestions come from a model, so the checks are
-- invariants (what accepting inserts equals what was shown) rather than fixed strings.

local helpers = require("helpers")
local eq, ok = helpers.eq, helpers.ok

local child = helpers.child()
local files = 0

after_all(function()
  child:stop()
end)

---@param opts? table setup() options; cmd is the real server's, suggestions short (quick to generate)
local function setup(opts)
  local defaults = { cmd = helpers.server_cmd(), settings = { completion = { maxTokens = 16 } } }
  child:lua("require('codestral').setup(...)", vim.tbl_extend("force", defaults, opts or {}))
end

--- Leaves insert mode and edits a new Python file holding `lines`, the cursor on its last line.
local function new_file(lines)
  files = files + 1
  child:input("<Esc>")
  child:settle()
  child:edit(("f%d.py"):format(files), lines)
  child:lua("vim.cmd('normal! G')")
end

local function current()
  local shown = child:lua("return require('codestral.suggestion').current()")
  return shown ~= vim.NIL and shown or nil
end

local function wait_visible()
  child:wait("require('codestral').is_visible()", 30000)
  return current()
end

--- Waits until the text before the cursor is `text`.
local function wait_before_cursor(text)
  local ok_, err = pcall(child.wait, child, "around_cursor()[1] == ...", 5000, text)
  if not ok_ then
    eq(text, (child:around_cursor()), "text before the cursor (" .. tostring(err) .. ")")
  end
end

-- The word accept_word takes: blanks, then a run of word characters, or else a run of punctuation.
local function first_word(text)
  return text:match("^%s*[%w_\128-\255]+") or text:match("^%s*[^%w_%s\128-\255]*")
end

describe("with the real server", function()
  it("starts it for a Python buffer, which reports ready", function()
    setup({ auto_trigger = false })
    new_file({ "" })
    child:wait_ready()
    eq(1, child:lua("return #vim.lsp.get_clients({ bufnr = 0, name = 'codestral' })"), "clients attached")
  end)

  it("shows ghost text while typing, at the cursor, in the codestral namespace", function()
    setup({ auto_trigger = true, debounce_ms = 20 })
    new_file({ "def add(a, b):", "" })
    child:input("Areturn a")
    local s = wait_visible()
    local cursor = child:lua("return vim.api.nvim_win_get_cursor(0)")
    local marks = child:extmarks()
    eq(1, #marks, "one extmark")
    eq({ cursor[1] - 1, cursor[2] }, { marks[1][2], marks[1][3] }, "extmark position = cursor")
    local details = marks[1][4]
    eq(#vim.split(s.text, "\n", { plain = true }) - 1, details.virt_lines and #details.virt_lines or 0, "virtual lines")
    for _, chunk in ipairs(vim.list_extend({ details.virt_text }, details.virt_lines or {})) do
      eq("CodestralSuggestion", chunk[1] and chunk[1][2] or "CodestralSuggestion", "highlight group")
    end

    -- A keystroke hides it; what shows next belongs to the new text.
    child:input(" ")
    wait_visible()
    cursor = child:lua("return vim.api.nvim_win_get_cursor(0)")
    eq(
      { cursor[1] - 1, cursor[2] },
      { child:extmarks()[1][2], child:extmarks()[1][3] },
      "new extmark at the new cursor"
    )
  end)

  it("accepts the whole suggestion with Tab", function()
    setup({ auto_trigger = false })
    new_file({ "import os", "", "", "def list_files(directory):", "" })
    child:input("A    files = <M-]>")
    local s = wait_visible()
    local before, after = child:around_cursor()
    child:input("<Tab>")
    wait_before_cursor(before .. s.text)
    local _, now_after = child:around_cursor()
    eq(after:sub(#s.replaced + 1), now_after, "text after the cursor")
    eq(false, child:lua("return require('codestral').is_visible()"), "visible after accepting")
    eq({}, child:extmarks(), "extmarks after accepting")
  end)

  it("accepts a word, then a line, leaving the rest shown", function()
    setup({ auto_trigger = false })
    new_file({ "class Point:", "    def __init__(self, x, y):", "" })
    child:input("A        self.<M-]>")
    local s = wait_visible()
    local before = child:around_cursor()
    local word = first_word(s.text)
    child:input("<M-w>")
    wait_before_cursor(before .. word)
    if #word == #s.text then
      return
    end
    local rest = ok(current(), ("nothing shown after accepting %q of %q"):format(word, s.text)).text
    eq(s.text:sub(#word + 1), rest, "rest shown after accept_word")
    local newline = rest:find("\n", rest:sub(1, 1) == "\n" and 2 or 1, true)
    local line = newline and rest:sub(1, newline - 1) or rest
    child:input("<M-l>")
    wait_before_cursor(before .. word .. line)
    eq(#line < #rest and rest:sub(#line + 1) or nil, (current() or {}).text, "rest shown after accept_line")
  end)

  it("places and accepts a suggestion after non-ASCII text", function()
    setup({ auto_trigger = false })
    new_file({ 'greeting = "héllo wörld 𝄞"', "" })
    child:input('Aprint(greeting, "→ ", <M-]>')
    local s = wait_visible()
    local before = child:around_cursor()
    eq(#child:lua("return vim.api.nvim_get_current_line()"), child:extmarks()[1][3], "extmark at the byte column")
    child:input("<Tab>")
    wait_before_cursor(before .. s.text)
  end)

  it("dismisses on cursor move and on leaving insert mode", function()
    setup({ auto_trigger = false })
    new_file({ "for i in range(10):", "" })
    for _, keys in ipairs({ "<Left>", "<Esc>" }) do
      child:input("A    print(i<M-]>")
      wait_visible()
      child:input(keys)
      child:wait("not require('codestral').is_visible()")
      eq({}, child:extmarks(), "extmarks after " .. keys)
      child:input("<Esc>cc<Esc>")
      child:settle()
    end
  end)

  it("lets Tab indent when no suggestion is shown", function()
    setup({ auto_trigger = false })
    new_file({ "x = 1", "" })
    child:lua("vim.bo.expandtab = false; vim.bo.softtabstop = 0")
    child:input("A<Tab>")
    child:settle()
    eq(false, child:lua("return require('codestral').is_visible()"), "visible")
    eq("\t", child:lua("return vim.api.nvim_get_current_line()"), "line")
  end)

  it("sends setup's settings to the server (completion.enabled, completion.maxTokens)", function()
    local function ask(lines)
      new_file(lines)
      child:input("A")
      child:settle()
      return child:lua([[
        local bufnr = vim.api.nvim_get_current_buf() -- not 0: a real number makes the client send changes first
        local client = require("codestral.client").get(bufnr)
        local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
        params.context = { triggerKind = 1 }
        local call = require("codestral.client").call -- client:request_sync on 0.11, client.request_sync on 0.10
        local answer = assert(call(client, "request_sync", "textDocument/inlineCompletion", params, 30000, bufnr))
        local items = answer.result and (answer.result.items or answer.result) or {}
        return items[1] and items[1].insertText or ""
      ]])
    end
    -- Whatever the model: the server reports "disabled" only if it received the setting.
    setup({ auto_trigger = false, settings = { completion = { enabled = false } } })
    child:wait("(require('codestral').status() or {}).state == 'disabled'")
    eq("", ask({ "def area(width, height):", "    return " }), "no suggestion while disabled")
    setup({ auto_trigger = false, settings = { completion = { maxTokens = 1, multiline = "always" } } })
    child:wait("(require('codestral').status() or {}).state == 'ready'")
    -- One token: at most 16 characters, and never two words (a piece has no space inside).
    local short = ask({ "def volume(width, height, depth):", "    return " })
    ok(#short <= 16 and not short:find("%S%s+%S"), ("maxTokens 1 gave %q"):format(short))
  end)

  it(":checkhealth codestral reports the loaded model", function()
    child:lua("vim.cmd('checkhealth codestral')")
    local report = child:lua("return table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), '\\n')")
    ok(report:find("OK model loaded"), report)
    ok(report:find("OK server running"), report)
    ok(report:find("OK Neovim"), report)
  end)
end)

describe("with the real server speaking UTF-16", function()
  it("places and accepts a suggestion after non-ASCII text", function()
    child:stop()
    child = helpers.child()
    setup({ auto_trigger = false })
    -- Offer only UTF-16, so that LSP columns and byte columns differ on this line.
    child:lua([[
      if vim.fn.has("nvim-0.11") == 1 then
        local config = vim.lsp.config.codestral
        config.capabilities.general.positionEncodings = { "utf-16" }
        vim.lsp.config.codestral = config
      else -- 0.10: the plugin starts the client with vim.lsp.start when the buffer opens
        local start = vim.lsp.start
        vim.lsp.start = function(config, opts)
          config.capabilities = vim.tbl_deep_extend("force", config.capabilities or vim.lsp.protocol.make_client_capabilities(),
            { general = { positionEncodings = { "utf-16" } } })
          return start(config, opts)
        end
      end
    ]])
    new_file({ 'greeting = "héllo wörld 𝄞"', "" })
    child:wait_ready()
    eq("utf-16", child:lua("return require('codestral.client').get(0).offset_encoding"), "position encoding")
    child:input('Aprint(greeting, "→ 𝄞", <M-]>')
    local s = wait_visible()
    local before = child:around_cursor()
    eq(#child:lua("return vim.api.nvim_get_current_line()"), child:extmarks()[1][3], "extmark at the byte column")
    child:input("<Tab>")
    wait_before_cursor(before .. s.text)
  end)
end)
